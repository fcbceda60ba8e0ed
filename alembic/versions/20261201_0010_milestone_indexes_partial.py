"""the funnel milestones' own indexes hold only readers who reached the milestone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 11:50:00

A new reader has none of these four times yet, and a full index still takes an entry for each
NULL: four index writes in every signup that no query reads (they all ask for a range, which
implies NOT NULL). PostgreSQL spent a sixth of a signup batch's time on them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("confirmed_at", "confirm_page_opened_at", "regimen_opened_at", "first_click_at")


def upgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_subscribers_{column}", table_name="subscribers")
        reached = sa.text(f"{column} IS NOT NULL")
        op.create_index(f"ix_subscribers_{column}", "subscribers", [column],
                        postgresql_where=reached, sqlite_where=reached)


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_subscribers_{column}", table_name="subscribers")
        op.create_index(f"ix_subscribers_{column}", "subscribers", [column])
