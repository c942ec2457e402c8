"""Trial slots: workers claim each trial of a study's budget before starting it (no budget overshoot).

Trials that already ran (any state but WAITING) get the slots 0, 1, … of their study in trial order, so a
study resumed after the upgrade runs only what its budget has left.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_trial_slots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("study_name", "slot"),
    )
    # A new database gets Optuna's tables after this migration (`store.upgrade`): nothing to carry over then.
    if {"trials", "studies"} <= set(sa.inspect(op.get_bind()).get_table_names()):
        op.execute(
            "INSERT INTO ps_trial_slots (study_name, slot, trial_number, claimed_at) "
            "SELECT s.study_name, ROW_NUMBER() OVER (PARTITION BY t.study_id ORDER BY t.number) - 1, t.number, "
            "CURRENT_TIMESTAMP FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE t.state <> 'WAITING'"
        )


def downgrade() -> None:
    op.drop_table("ps_trial_slots")
