"""Bring the database schema up to date at start-up, once even when several workers start."""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from .models import Base


async def ensure_schema(engine: AsyncEngine, instance_path: Path) -> None:
    """Create missing tables; a file lock serialises workers of one machine."""
    instance_path.mkdir(parents=True, exist_ok=True)
    lock_path = instance_path / "schema.lock"
    await asyncio.to_thread(_locked_create, engine, lock_path)


def _locked_create(engine: AsyncEngine, lock_path: Path) -> None:
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            asyncio.run(_create(engine.url.render_as_string(hide_password=False)))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def _create(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()
