"""Proxy noise floors: per-profile score spread over training seeds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_proxy_calibrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("profile", sa.String(200), nullable=False, index=True),
        sa.Column("profile_hash", sa.String(64), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("means", sa.JSON(), nullable=False),
        sa.Column("stds", sa.JSON(), nullable=False),
        sa.Column("runs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ps_proxy_calibrations")
