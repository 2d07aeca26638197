"""Create, authenticate, change and delete users. Takes the session; raises domain errors."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import EmailTaken, InvalidCredentials
from .lookups import find_by_email
from .models import User
from .passwords import PasswordHasher
from .rules import email_key


async def create_user(
    db: AsyncSession,
    hasher: PasswordHasher,
    name: str,
    email: str,
    password: str,
    *,
    public_id: str | None = None,
) -> User:
    """Register a user; the database's unique index decides duplicate emails."""
    taken = await find_by_email(db, email) is not None
    await db.commit()  # end the read before the slow hash
    if taken:
        raise EmailTaken()
    key = email_key(email)
    user = User(name=name, email=email, email_key=key, password=await hasher.hash(password))
    if public_id:
        user.public_id = public_id
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise EmailTaken() from None
    return user


async def authenticate(
    db: AsyncSession, hasher: PasswordHasher, found: User | None, password: str
) -> User:
    """`found` (the user the login named, or None) if the password matches; unknown emails cost
    one hash too. `db` is used only to store an upgraded hash."""
    user = found
    if user is None:
        await hasher.verify_dummy(password)
        raise InvalidCredentials()
    await check_password(db, hasher, user, password)
    return user


async def check_password(
    db: AsyncSession, hasher: PasswordHasher, user: User, password: str
) -> None:
    """Raise InvalidCredentials unless the password matches; re-hash stale hashes."""
    result = await hasher.verify(password, user.password)
    if not result.ok:
        raise InvalidCredentials()
    if result.needs_update:
        await set_password(db, hasher, user, password)


async def set_password(db: AsyncSession, hasher: PasswordHasher, user: User, password: str) -> None:
    """Store a new hash of the password for the user."""
    user.password = await hasher.hash(password)
    await db.execute(update(User).where(User.id == user.id).values(password=user.password))
    await db.commit()


async def swap_password_hash(db: AsyncSession, user: User, new_hash: str) -> bool:
    """Replace the hash only if it is still the one `user` holds; False if it changed meanwhile.

    Does not commit: the caller decides with what else the change is committed.
    """
    result = await db.execute(
        update(User)
        .where(User.id == user.id, User.password == user.password)
        .values(password=new_hash)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    user.password = new_hash
    return True


async def rename(db: AsyncSession, user: User, name: str) -> User:
    """Change the user's display name."""
    await db.execute(update(User).where(User.id == user.id).values(name=name))
    await db.commit()
    user.name = name
    return user


async def mark_verified(db: AsyncSession, user_id: int) -> None:
    """Record that the user proved they own their email address."""
    await db.execute(update(User).where(User.id == user_id).values(email_verified=True))
    await db.commit()


async def delete_user(db: AsyncSession, user: User) -> None:
    """Remove the user's row; their sessions and tokens go with it."""
    await db.execute(delete(User).where(User.id == user.id))
    await db.commit()
