"""Alembic environment for promptsearch's own tables (Optuna migrates its tables itself).

Run through `promptsearch db upgrade`, which passes the database URL in `config.attributes`.
"""

from alembic import context
from sqlalchemy import create_engine

from promptsearch.store import VERSION_TABLE
from promptsearch.store.models import Base

config = context.config
url = config.attributes["url"]

with create_engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
