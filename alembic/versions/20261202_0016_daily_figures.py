"""the author's figures per signup day: daily_figures, figure_days, stale_figure_days; and
each lesson delivery's signup time

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 18:00:00

The author's numbers are counted once per closed signup day and kept (service.funnel.rollups),
so a year's view reads 365 days of rows instead of every reader of the year. The tables start
empty: `regimen migrate` fills them right after this migration (with a progress bar), and until
a day is filled its figures are counted from the raw rows, so nothing is ever missing.

A lesson delivery gets a copy of its subscription's signup time, as progress rows have (0013):
a signup day's lesson figures are then a range of the deliveries' own index. Found through the
subscriptions instead, PostgreSQL read every delivery to count one day's (bench/scale.py, a
million readers: 125 ms for today's lessons). The index by lesson and time served the figures
per period of settling, which are gone: dropped, one less index for each lesson settled.
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
        sa.Column("through", sa.DateTime(timezone=True), nullable=False),
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


    with op.batch_alter_table("lesson_deliveries") as batch:
        batch.add_column(sa.Column("signed_up_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE lesson_deliveries SET signed_up_at = (SELECT created_at FROM subscribers "
               "WHERE subscribers.id = lesson_deliveries.subscriber_id)")
    with op.batch_alter_table("lesson_deliveries") as batch:
        batch.alter_column("signed_up_at", existing_type=sa.DateTime(timezone=True),
                           nullable=False)
    op.drop_index("ix_lesson_deliveries_regimen", table_name="lesson_deliveries")
    op.create_index("ix_lesson_deliveries_cohort", "lesson_deliveries",
                    ["regimen", "signed_up_at"])


def downgrade() -> None:
    op.drop_index("ix_lesson_deliveries_cohort", table_name="lesson_deliveries")
    op.create_index("ix_lesson_deliveries_regimen", "lesson_deliveries",
                    ["regimen", "lesson", "at"])
    with op.batch_alter_table("lesson_deliveries") as batch:
        batch.drop_column("signed_up_at")
    op.drop_table("stale_figure_days")
    op.drop_table("daily_figures")
    op.drop_table("figure_days")
