"""an index for claiming the oldest queued mail first

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 00:00:00

The worker claims the oldest due mail first (service.core.outbox.claim_due: ORDER BY id). With
only `ix_outbox_due` (status, next_attempt_at), each claim read every due row and sorted them
to take the first few: with 100,000 lessons queued at once, every claim of 60 read all that
were left (bench/mail.py --lessons). With (status, id) the queued rows are read in id order and
a claim stops after its few.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_queued_oldest", "outbox", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_queued_oldest", table_name="outbox")
