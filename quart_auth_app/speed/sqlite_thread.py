"""One thread that owns one plain sqlite3 connection; the event loop hands it work, one call a hop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..config import DEFAULT_DATABASE_TIMEOUT
from ..db import open_sqlite
from ..faults import drops_connection

R = TypeVar("R")


class SqliteThread:
    """Runs functions of the connection on its own thread; opened there on first use.

    A store failure that may have spoilt the connection (read-only file, I/O error; faults.py)
    closes it and the next call opens a fresh one: a connection opened while the file was
    read-only would stay read-only.
    """

    def __init__(
        self,
        path: str,
        *,
        read_only: bool,
        name: str,
        busy_timeout: float = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None  # used on the thread only

    async def run(self, work: Callable[..., R], *args: Any) -> R:
        """`work(connection, *args)` on the thread.

        Once the thread has started a call it runs to its end, even if the awaiting request is
        cancelled: a transaction is never cut short half-way.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work, *args)

    def _call(self, work: Callable[..., R], *args: Any) -> R:
        if self._conn is None:
            # Opened on first use, when the schema (and the database file) exist.
            self._conn = open_sqlite(
                self.path, read_only=self.read_only, busy_timeout=self.busy_timeout
            )
        try:
            return work(self._conn, *args)
        except sqlite3.Error as error:
            if drops_connection(error):
                self._close()
            raise

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)
