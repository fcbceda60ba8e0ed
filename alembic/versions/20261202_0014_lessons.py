"""follow-up lessons: who agreed to them, what each reader was sent, when to look next

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 12:00:00

Every subscription that exists was confirmed under wording that promised nothing after the
regimen mail, so none of them gets lessons: `lessons_consented_at` stays NULL for all of them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("lessons_consented_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("lessons_stopped_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("next_lesson_at", sa.DateTime(timezone=True)))
    due = sa.text("next_lesson_at IS NOT NULL")
    op.create_index("ix_subscribers_next_lesson_at", "subscribers", ["next_lesson_at"],
                    postgresql_where=due, sqlite_where=due)
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("confirm_text_version", sa.String(length=32)))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("lesson", sa.String(length=80)))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("lesson", sa.String(length=80)))
    op.create_table(
        "lesson_deliveries",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("lesson", sa.String(length=80), nullable=False),
        sa.Column("regimen", sa.String(length=80), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"],
                                name=op.f("fk_lesson_deliveries_subscriber_id_subscribers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "lesson", name=op.f("pk_lesson_deliveries")),
    )
    op.create_index("ix_lesson_deliveries_regimen", "lesson_deliveries",
                    ["regimen", "lesson", "at"])
    op.create_table(
        "lessons_seen",
        sa.Column("regimen", sa.String(length=80), nullable=False),
        sa.Column("lesson", sa.String(length=80), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("after_days", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("regimen", "lesson", name=op.f("pk_lessons_seen")),
    )


def downgrade() -> None:
    op.drop_table("lessons_seen")
    op.drop_index("ix_lesson_deliveries_regimen", table_name="lesson_deliveries")
    op.drop_table("lesson_deliveries")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("lesson")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("lesson")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("confirm_text_version")
    op.drop_index("ix_subscribers_next_lesson_at", table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("next_lesson_at")
        batch.drop_column("lessons_stopped_at")
        batch.drop_column("lessons_consented_at")
