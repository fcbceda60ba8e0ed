"""one reader per address, one subscription per address and regimen

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 17:00:00

Every row of `subscribers` stays what it was, now a subscription to one regimen: its public id,
token version, consents, mail and events are untouched, so every link mailed before still opens
the same page. What belongs to the address itself (suppression after a bounce or complaint)
moves to the new `readers` table, one row per address; the address stays on each subscription
as the key to its reader.

The subscriptions that exist belong to the site's default regimen: `regimen migrate` passes its
key as the alembic attribute "default_regimen" (a one-file site's key is the file's name,
"regimen" for the content/regimen.yaml of earlier versions).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    default_regimen = op.get_context().config.attributes.get("default_regimen")
    if not default_regimen:
        held = op.get_bind().execute(sa.text("SELECT count(*) FROM subscribers")).scalar()
        if held:
            # Guessing would send every link mailed so far to a regimen that may not exist.
            raise RuntimeError("migration 0011 needs the content's default regimen for the "
                               f"{held} readers held: run `regimen migrate`, which passes it")
        default_regimen = "regimen"  # no row takes it
    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suppressed_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readers")),
        sa.UniqueConstraint("email", name=op.f("uq_readers_email")),
    )
    op.execute("INSERT INTO readers (email, created_at, suppressed_at, suppressed_reason) "
               "SELECT email, created_at, suppressed_at, suppressed_reason FROM subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("regimen", sa.String(length=80), nullable=False,
                                   server_default=default_regimen))
        batch.drop_constraint("uq_subscribers_email", type_="unique")
        batch.create_unique_constraint(op.f("uq_subscribers_email"), ["email", "regimen"])
        batch.create_foreign_key(op.f("fk_subscribers_email_readers"), "readers", ["email"],
                                 ["email"], ondelete="CASCADE")
        batch.drop_column("suppressed_reason")
        batch.drop_column("suppressed_at")
    with op.batch_alter_table("subscribers") as batch:
        batch.alter_column("regimen", server_default=None)


def downgrade() -> None:
    # Back to one subscription per address: only the default regimen's survive.
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("suppressed_reason", sa.String(length=32), nullable=True))
    op.execute("UPDATE subscribers SET suppressed_at = (SELECT r.suppressed_at FROM readers r "
               "WHERE r.email = subscribers.email), suppressed_reason = (SELECT "
               "r.suppressed_reason FROM readers r WHERE r.email = subscribers.email)")
    # What goes with the subscriptions left out, said outright: SQLite's migrations run
    # without its foreign-key checks, so nothing would cascade, and a later row could take a
    # deleted one's id and with it that reader's consents and mail.
    extra = "SELECT id FROM subscribers WHERE id NOT IN (SELECT min(id) FROM subscribers " \
            "GROUP BY email)"
    for table in ("consents", "outbox", "events"):
        op.execute(f"DELETE FROM {table} WHERE subscriber_id IN ({extra})")
    op.execute(f"DELETE FROM subscribers WHERE id IN ({extra})")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint(op.f("fk_subscribers_email_readers"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_subscribers_email"), type_="unique")
        batch.create_unique_constraint("uq_subscribers_email", ["email"])
        batch.drop_column("regimen")
    op.drop_table("readers")
