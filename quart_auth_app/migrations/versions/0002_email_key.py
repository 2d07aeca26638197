"""Email lookup key: users.email_key, unique, computed in Python; replaces lower(email).

SQLite's lower() folds only ASCII, so `Ülrich@example.com` could sign up and never log in, and
`ülrich@example.com` became a second account. Every row gets rules.email_key(email), the key
the code now looks users up by. Rows that share a key (on SQLite any letter beyond ASCII in
two cases; on either backend where folding goes beyond lower case, as straße and STRASSE) stop
the upgrade, which then changes nothing, with a message naming them: which account to keep is
the operator's call.

The keys are computed by rules.email_key as it is when this runs; a later change to that
function needs a migration of its own that recomputes them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from itertools import groupby

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from quart_auth_app.migrate import SchemaProblem
from quart_auth_app.rules import email_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000
# Conflicts named in the refusal; the rest are counted.
SHOWN_CONFLICTS = 10
USERS = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("email", sa.String()),
    sa.column("email_key", sa.String()),
)
FILL = (
    sa.update(USERS)
    .where(USERS.c.id == sa.bindparam("row_id"))
    .values(email_key=sa.bindparam("key"))
)


def upgrade() -> None:
    connection = op.get_bind()
    op.add_column("users", sa.Column("email_key", sa.String(length=320), nullable=True))
    _fill_keys(connection)
    _refuse_conflicts(connection)  # the whole upgrade is one transaction: this undoes it all
    op.drop_index("ux_users_email_lower", table_name="users")
    # On SQLite, batch mode rebuilds the table (it cannot add NOT NULL to a column in place).
    with op.batch_alter_table("users") as batch:
        batch.alter_column("email_key", existing_type=sa.String(length=320), nullable=False)
        batch.create_index("ix_users_email_key", ["email_key"], unique=True)


def _fill_keys(connection: Connection) -> None:
    """Set every row's key, a batch of rows at a time (keyset pagination by id)."""
    last = 0
    while rows := _rows_after(connection, last):
        connection.execute(FILL, [{"row_id": id_, "key": email_key(email)} for id_, email in rows])
        last = rows[-1][0]


def _rows_after(connection: Connection, last: int) -> list[tuple[int, str]]:
    query = (
        sa.select(USERS.c.id, USERS.c.email)
        .where(USERS.c.id > last)
        .order_by(USERS.c.id)
        .limit(BATCH)
    )
    return [(row.id, row.email) for row in connection.execute(query)]


def _refuse_conflicts(connection: Connection) -> None:
    """Raise SchemaProblem naming the accounts that share a key, if any do."""
    shared = (
        sa.select(USERS.c.email_key)
        .group_by(USERS.c.email_key)
        .having(sa.func.count() > 1)
        .order_by(USERS.c.email_key)
    )
    keys = connection.execute(shared).scalars().all()
    if not keys:
        return
    query = (
        sa.select(USERS.c.email_key, USERS.c.id, USERS.c.email)
        .where(USERS.c.email_key.in_(keys[:SHOWN_CONFLICTS]))
        .order_by(USERS.c.email_key, USERS.c.id)
    )
    groups = [
        " and ".join(f"id {row.id} {row.email!r}" for row in rows)
        for _, rows in groupby(connection.execute(query), key=lambda row: row.email_key)
    ]
    more = len(keys) - len(groups)
    raise SchemaProblem(
        f"cannot make emails unique by their lookup key: {len(keys)} group(s) of accounts "
        f"share one ({'; '.join(groups)}{f'; and {more} more' if more else ''}). Keep one "
        "account of each group (delete the others or change their email), then run "
        "`quart-auth-app db upgrade` again; nothing was changed."
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_email_key")
        batch.drop_column("email_key")
    op.create_index("ux_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
