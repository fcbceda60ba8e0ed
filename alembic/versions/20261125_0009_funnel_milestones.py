"""each reader's funnel milestones on their row (admin page, regimen stats at scale)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 13:20:00

Filled from the events already recorded: the first regimen opening, the first click, and the
first confirm-page opening that no confirmation or reminder mail explains within 60 seconds
(the default REGIMEN_SCANNER_WINDOW; from now on the configured window applies at record time).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = ("confirm_page_opened_at", "regimen_opened_at", "first_click_at")


def _first(kind: str, extra: str = "") -> str:
    return (f"(SELECT min(e.created_at) FROM events AS e WHERE e.subscriber_id = subscribers.id"
            f" AND e.kind = '{kind}'{extra})")


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    for column in COLUMNS:
        op.create_index(f"ix_subscribers_{column}", "subscribers", [column])
    # Index-only reads for the period's totals and its clicks per exercise and reader.
    op.drop_index("ix_subscribers_created_at", table_name="subscribers")
    op.create_index("ix_subscribers_funnel", "subscribers", ["created_at", "confirmed_at",
                                                             *COLUMNS])
    op.drop_index("ix_events_kind_created_at", table_name="events")
    op.create_index("ix_events_kind_created_at", "events",
                    ["kind", "created_at", "exercise", "subscriber_id"])
    if op.get_bind().dialect.name == "sqlite":
        window_start = "strftime('%Y-%m-%d %H:%M:%f', e.created_at, '-60 seconds')"
    else:
        window_start = "e.created_at - interval '60 seconds'"
    human = (" AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.subscriber_id = e.subscriber_id"
             " AND o.kind IN ('confirm', 'reminder') AND o.sent_at <= e.created_at"
             f" AND o.sent_at > {window_start})")
    op.execute(f"UPDATE subscribers SET regimen_opened_at = {_first('regimen_opened')}, "
               f"first_click_at = {_first('exercise_clicked')}, "
               f"confirm_page_opened_at = {_first('confirm_page_opened', human)}")


def downgrade() -> None:
    op.drop_index("ix_events_kind_created_at", table_name="events")
    op.create_index("ix_events_kind_created_at", "events", ["kind", "created_at"])
    op.drop_index("ix_subscribers_funnel", table_name="subscribers")
    op.create_index("ix_subscribers_created_at", "subscribers", ["created_at"])
    for column in reversed(COLUMNS):
        op.drop_index(f"ix_subscribers_{column}", table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
