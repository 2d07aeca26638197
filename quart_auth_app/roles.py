"""Granting and revoking a user's roles (SPEC §10); the access check reads them on every request."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import UserRole
from .permissions import checked_names


async def roles_of(db: AsyncSession, user_id: int) -> list[str]:
    """The user's roles, sorted."""
    found = await db.scalars(
        select(UserRole.role).where(UserRole.user_id == user_id).order_by(UserRole.role)
    )
    return list(found)


async def grant(db: AsyncSession, user_id: int, role: str) -> bool:
    """Give the user a role; False if they held it already. Commits."""
    added = await add_roles(db, user_id, [role])
    await db.commit()
    return added > 0


async def revoke(db: AsyncSession, user_id: int, role: str) -> bool:
    """Take a role from the user; False if they did not hold it. Commits."""
    removed = await remove_roles(db, user_id, [role])
    await db.commit()
    return removed > 0


async def add_roles(db: AsyncSession, user_id: int, roles: Iterable[str]) -> int:
    """Give the user each role they lack (names checked); how many were new. Does not commit."""
    names = sorted(checked_names(roles, "role"))
    if not names:
        return 0
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [{"user_id": user_id, "role": name} for name in names]
    result = await db.execute(insert(UserRole).values(rows).on_conflict_do_nothing())
    return int(result.rowcount)  # type: ignore[attr-defined]


async def remove_roles(db: AsyncSession, user_id: int, roles: Iterable[str]) -> int:
    """Take each listed role from the user; how many they held. Does not commit."""
    names = list(roles)
    if not names:
        return 0
    result = await db.execute(
        delete(UserRole).where(UserRole.user_id == user_id, UserRole.role.in_(names))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
