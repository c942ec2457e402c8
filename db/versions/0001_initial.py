"""Initial project tables: templates, generation cache, trial outputs, trial metrics, proxy runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_templates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("text_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("family", sa.String(100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(50), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ps_generations",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("template_hash", sa.String(64), nullable=False, index=True),
        sa.Column("model_id", sa.String(500), nullable=False),
        sa.Column("model_revision", sa.String(200), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(500), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(50), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ps_trial_outputs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(500), nullable=False),
        sa.Column("generation_key", sa.String(64), nullable=False),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("study_name", "trial_number", "generation_key"),
    )
    op.create_table(
        "ps_trial_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(50), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.UniqueConstraint("study_name", "trial_number", "name"),
    )
    op.create_table(
        "ps_proxy_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("input_key", sa.String(64), nullable=False, index=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(200), nullable=False),
        sa.Column("model_config_json", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("train_tokens", sa.Integer(), nullable=False),
        sa.Column("synthetic_tokens", sa.Integer(), nullable=False),
        sa.Column("raw_tokens", sa.Integer(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("ps_proxy_runs", "ps_trial_metrics", "ps_trial_outputs", "ps_generations", "ps_templates"):
        op.drop_table(table)
