"""The SQL store, in three parts: the tables (`promptsearch.store.models`), database set-up and migrations
(`database`), and every read and write of the tables (`repository.Store`). Rows are imported from `models`.
"""

from promptsearch.store.database import DEFAULT_URL, VERSION_TABLE, optuna_storage, redact, upgrade
from promptsearch.store.repository import Store

__all__ = ["DEFAULT_URL", "VERSION_TABLE", "Store", "optuna_storage", "redact", "upgrade"]
