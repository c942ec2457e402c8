"""promptsearch: search for the best recipe for synthetic LLM pretraining data.

The loop, one module per stage:
space → templates → rephrase → measure → proxy → score → (promote) → export.
"""

__version__ = "0.1.0"
