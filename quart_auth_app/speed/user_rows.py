"""Users built from raw driver rows of lookups.USER_SELECT, as SQLAlchemy would convert them.

Relies on SQLAlchemy's class manager (`Mapper.class_manager.new_instance`, undocumented):
tests/speed/test_user_rows.py fails when it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect

from ..lookups import USER_COLUMNS, USER_SELECT
from ..models import User

# The way the ORM builds an object it loads: a new instance, its values put in place. User(**)
# fires an attribute event per column (modified-state bookkeeping nobody here reads).
NEW_USER: Callable[[], User] = User.__mapper__.class_manager.new_instance


def _user(values: Sequence[Any]) -> User:
    # Transient as User(**) would be: nothing adds it to a session, callers only read it.
    user = NEW_USER()
    user.__dict__.update(zip(USER_COLUMNS, values, strict=True))
    return user


class UserRows:
    """Applies each column's result processor for the dialect (UTCDateTime's, for one).

    A row may carry `extra` columns after the user's (a token's, read with its user).
    """

    def __init__(self, dialect: Dialect, extra: Sequence[ColumnElement[Any]] = ()) -> None:
        self.processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in (*USER_SELECT, *extra)
        ]

    def user(self, values: Sequence[Any]) -> User:
        """A detached User from the row's values, in USER_SELECT's order (only read)."""
        return _user(self._converted(values))

    def split(self, values: Sequence[Any]) -> tuple[User, list[Any]]:
        """The user of a row with extra columns, and those columns' values."""
        converted = self._converted(values)
        split = len(USER_COLUMNS)
        return _user(converted[:split]), converted[split:]

    def _converted(self, values: Sequence[Any]) -> list[Any]:
        return [
            value if proc is None else proc(value)
            for proc, value in zip(self.processors, values, strict=True)
        ]
