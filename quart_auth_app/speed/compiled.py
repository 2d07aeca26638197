"""Statements compiled once for a raw driver connection: the SQL and its parameters' order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Select
from sqlalchemy.ext.asyncio import AsyncEngine


def compiled_sql(statement: Select[Any] | Insert, engine: AsyncEngine) -> tuple[str, list[str]]:
    """SQL text and the order of its positional parameters, compiled once.

    `positiontup` is an attribute of SQLAlchemy's SQLCompiler that its documentation does not
    promise (tests/speed/test_sqlite_store.py fails loudly if it goes).
    """
    compiled = statement.compile(dialect=engine.dialect)
    return str(compiled), list(compiled.positiontup or [])
