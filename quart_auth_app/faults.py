"""Store failures, told apart from mistakes in the code: the first answer 503 and heal, the second 500.

A store failure is the database (or its connection, its file, its disk) failing while the
statement itself is fine: retrying later can succeed. Everything else a driver raises (a syntax
error, a constraint the code did not expect, a bad parameter) is a bug and stays a 500.

PostgreSQL errors are told by SQLSTATE (Appendix A of its manual), never by message:
- class 08 connection exception, 53 insufficient resources (disk full, out of memory, too many
  connections), 58 system error (I/O);
- 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up, shutting
  down), 57P04 database dropped, 57P05 idle session timeout;
- 57014 query canceled (a statement timeout), 25006 read-only transaction (a standby).
SQLite errors are told by primary result code: busy (the write lock stayed taken past the busy
timeout), read-only, I/O error, corrupt, disk full, cannot open, lock protocol, not a database,
permission denied. Besides these: a connection SQLAlchemy found dead, a pool checkout that
timed out, and OSError (refused, reset, and TimeoutError: a connect or statement timeout).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

PG_FAILURE_CLASSES = ("08", "53", "58")
PG_FAILURE_CODES = ("57P01", "57P02", "57P03", "57P04", "57P05", "57014", "25006")
SQLITE_FAILURES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
    }
)
# SQLite failures after which the connection is kept: a busy timeout and a full disk say
# nothing about it. After the others it is opened afresh: one opened while the file was
# read-only stays read-only for good, even once the file is writable again.
SQLITE_KEEPS_CONNECTION = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_FULL})


def is_store_failure(error: BaseException | None) -> bool:
    """Whether the error means the store failed (503, retry later) rather than the code (500)."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or is_store_failure(error.orig)
    if isinstance(error, sqlite3.Error):
        return sqlite_code(error) in SQLITE_FAILURES
    if isinstance(error, (PoolTimeout, DisconnectionError, OSError)):
        return True
    state = sqlstate(error)
    return state is not None and (state[:2] in PG_FAILURE_CLASSES or state in PG_FAILURE_CODES)


def drops_connection(error: BaseException) -> bool:
    """Whether the connection that raised the error must be replaced by a fresh one.

    A timed-out statement leaves an asyncpg connection waiting for the server to confirm a
    cancel, which a stalled server never does; a standby stays read-only; an SQLite connection
    opened while its file was read-only stays so.
    """
    if isinstance(error, DBAPIError):
        return drops_connection(error.orig) if error.orig is not None else False
    if isinstance(error, sqlite3.Error):
        code = sqlite_code(error)
        return code in SQLITE_FAILURES and code not in SQLITE_KEEPS_CONNECTION
    return isinstance(error, OSError) or sqlstate(error) == "25006"


def sqlite_code(error: sqlite3.Error) -> int | None:
    """SQLite's primary result code of the error (its extended code without the detail byte)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE a PostgreSQL driver attached to the error, if any."""
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def describe(error: BaseException | None) -> str:
    """The error's class and code, for logs: never its message, which may quote parameters."""
    if error is None:
        return "unknown"
    if isinstance(error, DBAPIError) and error.orig is not None:
        return f"{type(error).__name__} ({describe(error.orig)})"
    if isinstance(error, sqlite3.Error):
        return f"{type(error).__name__} {getattr(error, 'sqlite_errorname', '')}".strip()
    state = sqlstate(error)
    if state is not None:
        # asyncpg's own class (CannotConnectNowError...) is the cause of SQLAlchemy's adapter error.
        return f"{type(error.__cause__ or error).__name__} SQLSTATE {state}"
    return type(error).__name__
