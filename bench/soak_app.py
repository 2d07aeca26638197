"""The app with tracemalloc on, for `bench/soak.py --snapshots`: SIGUSR1 dumps a snapshot.

Each dump goes to $SOAK_SNAPSHOTS/<n>.tracemalloc; soak.py compares them. Tracing costs the
worker several times its CPU per request and adds to its RSS: for finding a leak, not measuring.
"""

from __future__ import annotations

import itertools
import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

tracemalloc.start(12)
_DUMPS = itertools.count()


def _dump(_signum: int, _frame: FrameType | None) -> None:
    path = Path(os.environ["SOAK_SNAPSHOTS"]) / f"{next(_DUMPS)}.tracemalloc"
    tracemalloc.take_snapshot().dump(str(path))


signal.signal(signal.SIGUSR1, _dump)

from quart_auth_app.asgi import app  # noqa: E402 - traced from its first import on

__all__ = ["app"]
