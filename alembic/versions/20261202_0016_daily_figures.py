"""the author's figures per signup day: daily_figures, figure_days, stale_figure_days

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 18:00:00

The author's numbers are counted once per closed signup day and kept (service.funnel.rollups),
so a year's view reads 365 days of rows instead of every reader of the year. The tables start
empty: `regimen migrate` fills them right after this migration (with a progress bar), and until
a day is filled its figures are counted from the raw rows, so nothing is ever missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "figure_days",
        sa.Column("regimen", sa.String(80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("shape", sa.String(16), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("regimen", "day", name="pk_figure_days"),
    )
    op.create_table(
        "daily_figures",
        sa.Column("regimen", sa.String(80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("figure", sa.String(32), nullable=False),
        sa.Column("key", sa.String(2048), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("regimen", "day", "figure", "key", name="pk_daily_figures"),
    )
    op.create_table(
        "stale_figure_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("regimen", sa.String(80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stale_figure_days"),
    )


def downgrade() -> None:
    op.drop_table("stale_figure_days")
    op.drop_table("daily_figures")
    op.drop_table("figure_days")
