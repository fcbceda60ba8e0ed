"""the reader's progress: the steps of a regimen each reader marked done

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 09:00:00

One row per subscription and step (an exercise's slug, or reading the regimen through),
deleted with the subscription. The regimen and the signup time are copied into each row so
that the author's numbers on how far readers get are one range on `ix_progress_cohort`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "progress",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=80), nullable=False),
        sa.Column("regimen", sa.String(length=80), nullable=False),
        sa.Column("signed_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"],
                                name=op.f("fk_progress_subscriber_id_subscribers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "step", name=op.f("pk_progress")),
    )
    op.create_index("ix_progress_cohort", "progress",
                    ["regimen", "signed_up_at", "step", "subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_progress_cohort", table_name="progress")
    op.drop_table("progress")
