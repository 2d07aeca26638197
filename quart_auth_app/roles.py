"""Granting and revoking a user's roles (SPEC §10); the access check reads them on every request."""

from __future__ import annotations

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
    (name,) = checked_names([role], "role")
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(UserRole).values(user_id=user_id, role=name).on_conflict_do_nothing()
    result = await db.execute(statement)
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke(db: AsyncSession, user_id: int, role: str) -> bool:
    """Take a role from the user; False if they did not hold it. Commits."""
    result = await db.execute(
        delete(UserRole).where(UserRole.user_id == user_id, UserRole.role == role)
    )
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]
