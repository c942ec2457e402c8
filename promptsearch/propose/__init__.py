"""Stage 6, propose: DSPy writes new templates from the study's measurements.

In: the running study (its best trials, their metrics and sample outputs), the space's `proposal` settings.
Out: every operator call recorded in `ps_proposals` (inputs, DSPy prompt, response, verdict with reason);
accepted templates stored with their parents (`origin="proposed"`), added to the study's `template_ids`
and enqueued as trials. The public entry is `ProposalLoop`, an Optuna callback `run_worker` adds.
"""

import os

# litellm, a dspy dependency, downloads a model-cost map when it is imported unless told to use its bundled
# copy (BerriAI/litellm#321, #1434). The proposer's native engine (`engine="lm15"`) never imports litellm, but
# DSPy does on some fallback paths; the setting is made here, before any module of this package runs.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from promptsearch.propose.loop import ProposalLoop

__all__ = ["ProposalLoop"]
