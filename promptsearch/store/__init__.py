"""The SQL store, in three parts: the tables (`models`), database set-up and migrations (`database`), and
every read and write of the tables (`repository.Store`). The names below are its public interface.
"""

from promptsearch.store.database import DEFAULT_URL, VERSION_TABLE, optuna_storage, redact, upgrade
from promptsearch.store.models import (
    AblationCalibrationRow,
    AblationJobRow,
    AblationRow,
    Base,
    GenerationRow,
    ProposalRoundRow,
    ProposalRow,
    ProxyCalibrationRow,
    ProxyRunRow,
    StudyWorkerRow,
    TemplateRow,
    TrialMetricRow,
    TrialOutputRow,
)
from promptsearch.store.repository import Store

__all__ = [
    "DEFAULT_URL",
    "VERSION_TABLE",
    "AblationCalibrationRow",
    "AblationJobRow",
    "AblationRow",
    "Base",
    "GenerationRow",
    "ProposalRoundRow",
    "ProposalRow",
    "ProxyCalibrationRow",
    "ProxyRunRow",
    "Store",
    "StudyWorkerRow",
    "TemplateRow",
    "TrialMetricRow",
    "TrialOutputRow",
    "optuna_storage",
    "redact",
    "upgrade",
]
