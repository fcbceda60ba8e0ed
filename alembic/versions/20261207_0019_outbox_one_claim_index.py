"""claims read the outbox through one index: ix_outbox_due (status, next_attempt_at) dropped

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 00:00:00

A claim takes the oldest due mail first (service.core.outbox.claim_due: ORDER BY id) and reads
`ix_outbox_queued_oldest` (status, id) in order, stopping after its few. With
`ix_outbox_due` beside it, the planners could read every due row through that one and sort
them instead: SQLite always did (its plan said USE TEMP B-TREE FOR ORDER BY), and PostgreSQL
did with a plan made when the outbox held a few hundred rows and kept for the connection's
prepared statement, without statistics to tell it better (a new table, or autovacuum off).
When 100,000 lessons came due at once, each claim of 60 then took 35-41 ms on PostgreSQL
(bench/mail.py --lessons). Nothing else read that index.

What it did well is lost: telling at once that nothing is due when many mails wait for a later
time (an import's paced mail, retries backing off). A claim then walks the waiting ones, one
index entry each, every poll.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
