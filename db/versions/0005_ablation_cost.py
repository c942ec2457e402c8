"""Ablation cost: the chain's predicted GPU-hours (at promotion) and the actual ones (Slurm elapsed x GPUs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ps_ablations") as batch:
        batch.add_column(sa.Column("cost", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ps_ablations") as batch:
        batch.drop_column("cost")
