"""Users built from raw driver rows of lookups.USER_SELECT, as SQLAlchemy would convert them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Dialect

from ..lookups import USER_COLUMNS, USER_SELECT
from ..models import User


class UserRows:
    """Applies each column's result processor for the dialect (UTCDateTime's, for one)."""

    def __init__(self, dialect: Dialect) -> None:
        self.processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in USER_SELECT
        ]

    def user(self, values: Sequence[Any]) -> User:
        """A detached User from the row's values, in USER_SELECT's order (only read)."""
        converted = (
            value if proc is None else proc(value)
            for proc, value in zip(self.processors, values, strict=True)
        )
        return User(**dict(zip(USER_COLUMNS, converted, strict=True)))
