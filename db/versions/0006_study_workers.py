"""Study workers as Slurm jobs: their job ids, recorded as sbatch returns them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_study_workers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("worker_index", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(50), nullable=False),
        sa.Column("state", sa.String(50), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ps_study_workers")
