"""claims read the outbox in the order of one index: (status, next_attempt_at, id)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 00:00:00

A claim takes the mail due longest first (service.core.outbox.claim_due: ORDER BY
next_attempt_at, id), read in this index's order and stopping after its few. Before, it took the
oldest by id with two indexes to choose from, (status, next_attempt_at) and (status, id), and
PostgreSQL could keep a plan that read every due row through the first and sorted them: a
statement is prepared once per connection, and its generic plan, made while the outbox was
nearly empty, chose that one. When 100,000 lessons came due at once, each claim of 60 then
took 35-41 ms instead of well under one (bench/mail.py --lessons). With one index that both
finds and orders, the plan made while the table is empty stays the right one as it grows.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_outbox_queued_oldest", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_queued_oldest", "outbox", ["status", "id"])
