"""Template lineage: proposal rounds and every operator call with its inputs, DSPy prompt, response and verdict.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_proposal_rounds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column("finished_trials", sa.Integer(), nullable=False),
        sa.Column("proposer_model", sa.String(500), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("study_name", "round_index"),
    )
    op.create_table(
        "ps_proposals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(50), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True, index=True),
        sa.Column("parent_template_ids", sa.JSON(), nullable=False),
        sa.Column("parent_trials", sa.JSON(), nullable=False),
        sa.Column("proposer_model", sa.String(500), nullable=False),
        sa.Column("proposer_revision", sa.String(200), nullable=False),
        sa.Column("feedback", sa.Text(), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ps_proposals")
    op.drop_table("ps_proposal_rounds")
