"""the author's figures per month: figure_months, monthly_figures; the daily series by figure

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 01:00:00

A year's view of the author's numbers summed each regimen's ~21,000 kept daily rows
(bench/scale.py, a million readers: ~40 ms of a 365-day /admin's ~185, and as long again
to go through the rows). The figures shown only for a whole period (sources, exercises,
progress, lessons) are now also kept summed per calendar month once every day of the month is
kept whole (service.funnel.upkeep), so such a view reads twelve months of them and the days of
the two months at its ends. The tables start empty: the worker's next pass (and `regimen
migrate`) sums every month whose days are kept.

The daily series (six figures a day) is read through an index by regimen, figure and day, with
the value in it: 2,200 entries for a year, where the primary key (by day first) read each
day's every figure (22 ms for one regimen's year at a million readers; 4 ms with it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "figure_months",
        sa.Column("regimen", sa.String(80), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("regimen", "month", name="pk_figure_months"),
    )
    op.create_table(
        "monthly_figures",
        sa.Column("regimen", sa.String(80), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("figure", sa.String(32), nullable=False),
        sa.Column("key", sa.String(2048), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("regimen", "month", "figure", "key", name="pk_monthly_figures"),
    )
    op.create_index("ix_daily_figures_series", "daily_figures",
                    ["regimen", "figure", "day", "value"])


def downgrade() -> None:
    op.drop_index("ix_daily_figures_series", table_name="daily_figures")
    op.drop_table("monthly_figures")
    op.drop_table("figure_months")
