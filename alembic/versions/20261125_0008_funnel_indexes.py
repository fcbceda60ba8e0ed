"""indexes for the author's funnel (admin page, regimen stats)

Revision ID: 0008
Revises: 0002
Create Date: 2026-11-25 13:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subscribers_created_at", "subscribers", ["created_at"])
    op.create_index("ix_subscribers_confirmed_at", "subscribers", ["confirmed_at"])
    op.create_index("ix_consents_signed_up_at", "consents", ["signed_up_at"])
    op.create_index("ix_events_subscriber_id_kind", "events", ["subscriber_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_events_subscriber_id_kind", table_name="events")
    op.drop_index("ix_consents_signed_up_at", table_name="consents")
    op.drop_index("ix_subscribers_confirmed_at", table_name="subscribers")
    op.drop_index("ix_subscribers_created_at", table_name="subscribers")
