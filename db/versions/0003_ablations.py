"""Full ablations of promoted trials: the bundle, its Slurm jobs, results and proxy calibration.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_ablations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_name", sa.String(200), nullable=False, index=True),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(200), nullable=False),
        sa.Column("proxy_profile", sa.String(200), nullable=False),
        sa.Column("proxy_score", sa.Float(), nullable=False),
        sa.Column("promoted_by", sa.String(100), nullable=False),
        sa.Column("bundle_dir", sa.Text(), nullable=False),
        sa.Column("state", sa.String(50), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("study_name", "trial_number", "profile"),
    )
    op.create_table(
        "ps_ablation_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ablation_id", sa.Integer(), sa.ForeignKey("ps_ablations.id"), nullable=False, index=True),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("job_id", sa.String(50), nullable=False),
        sa.Column("depends_on", sa.String(200), nullable=False),
        sa.Column("log_glob", sa.Text(), nullable=False),
        sa.Column("state", sa.String(50), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("exit_code", sa.String(20), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ps_ablation_calibrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proxy_profile", sa.String(200), nullable=False, index=True),
        sa.Column("profile", sa.String(200), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("kendall_tau", sa.Float(), nullable=True),
        sa.Column("pairwise_accuracy", sa.Float(), nullable=True),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ps_ablation_calibrations")
    op.drop_table("ps_ablation_jobs")
    op.drop_table("ps_ablations")
