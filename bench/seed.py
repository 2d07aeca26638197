"""Fill the benchmark database and mint tokens, with the app's own models and token service.

Run with the project's interpreter and the benchmark's environment (SECRET_KEY, DATABASE_URL,
INSTANCE_PATH), as bench/run.py does:

    seed.py users N OUT     create N users (one shared argon2id hash), write "email\\taccess" lines
    seed.py refresh N OUT   open N login sessions of existing users, write one refresh token a line
    seed.py pats N OUT      make a personal access token (profile:read) for each of N existing
                            users, write "email\\ttoken" lines (the bearer file format of users)
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from quart_auth_app.access_tokens import PREFIX
from quart_auth_app.config import load_settings
from quart_auth_app.migrate import upgrade_database
from quart_auth_app.models import (
    AccessToken,
    LoginSession,
    RefreshToken,
    User,
    new_public_id,
    utcnow,
)
from quart_auth_app.passwords import PasswordHasher
from quart_auth_app.rules import email_key
from quart_auth_app.tokens import TokenService, token_digest

PASSWORD = "benchmark passphrase"
BATCH = 2000


async def create_users(engine: AsyncEngine, count: int) -> list[tuple[int, str, str]]:
    """Insert users sharing one real hash (hashing 10,000 passwords would take minutes)."""
    settings = load_settings()
    hasher = PasswordHasher(
        settings.argon2_memory_cost, settings.argon2_time_cost, settings.argon2_parallelism, 1
    )
    password_hash = await hasher.hash(PASSWORD)
    hasher.close()
    now = utcnow()
    emails = [f"user{i}@bench.example" for i in range(count)]
    rows = [
        {
            "public_id": new_public_id(),
            "name": f"User {i}",
            "email": email,
            "email_key": email_key(email),
            "password": password_hash,
            "email_verified": True,
            "created_at": now,
        }
        for i, email in enumerate(emails)
    ]
    async with engine.begin() as conn:
        for start in range(0, count, BATCH):
            await conn.execute(insert(User), rows[start : start + BATCH])
    async with engine.connect() as conn:
        result = await conn.execute(select(User.id, User.public_id, User.email).order_by(User.id))
        return [(row.id, row.public_id, row.email) for row in result]


async def open_sessions(
    engine: AsyncEngine, users: list[tuple[int, str, str]], count: int
) -> list[tuple[str, str]]:
    """Open `count` login sessions round-robin over users; return (access, refresh) per session."""
    tokens = TokenService(load_settings())
    now = utcnow()
    lifetime = timedelta(seconds=tokens.lifetimes["refresh"])
    sessions, refreshes, pairs = [], [], []
    for i in range(count):
        user_id, public_id, _ = users[i % len(users)]
        session_id = secrets.token_urlsafe(16)
        access = tokens.issue(public_id, session_id, "access").token
        refresh = tokens.issue(public_id, session_id, "refresh").token
        sessions.append(
            {
                "id": session_id,
                "user_id": user_id,
                "created_at": now,
                "last_used_at": now,
                "expires_at": now + lifetime,
                "user_agent": "wrk",
            }
        )
        refreshes.append(
            {
                "digest": token_digest(refresh),
                "session_id": session_id,
                "expires_at": now + lifetime,
            }
        )
        pairs.append((access, refresh))
    async with engine.begin() as conn:
        for start in range(0, count, BATCH):
            await conn.execute(insert(LoginSession), sessions[start : start + BATCH])
            await conn.execute(insert(RefreshToken), refreshes[start : start + BATCH])
    return pairs


async def make_pats(engine: AsyncEngine, count: int) -> list[str]:
    """One profile:read token for each of the first `count` users; "email\ttoken" lines."""
    async with engine.connect() as conn:
        found = await conn.execute(select(User.id, User.email).order_by(User.id).limit(count))
        users = [(row.id, row.email) for row in found]
    rows, lines = [], []
    for user_id, email in users:
        secret = PREFIX + secrets.token_urlsafe(32)
        rows.append(
            {
                "id": secrets.token_urlsafe(9),
                "user_id": user_id,
                "name": "wrk",
                "digest": token_digest(secret),
                "scopes": "profile:read",
                "created_at": utcnow(),
            }
        )
        lines.append(f"{email}\t{secret}")
    async with engine.begin() as conn:
        await conn.execute(insert(AccessToken), rows)
    return lines


async def main(command: str, count: int, out: Path) -> None:
    settings = load_settings()
    await upgrade_database(settings.database_url, settings.instance_path)
    # The server may still be draining the previous scenario's writes: wait for the lock.
    engine = create_async_engine(settings.database_url, connect_args={"timeout": 60})
    try:
        if command == "users":
            users = await create_users(engine, count)
            # One session per user for the first 256 users: enough distinct bearer tokens.
            pairs = await open_sessions(engine, users[:256], min(256, len(users)))
            lines = [
                f"{email}\t{access}"
                for (_, _, email), (access, _) in zip(users, pairs, strict=False)
            ]
        elif command == "pats":
            lines = await make_pats(engine, count)
        else:
            async with engine.connect() as conn:
                found = await conn.execute(select(User.id, User.public_id, User.email).limit(1000))
                users = [(row.id, row.public_id, row.email) for row in found]
            lines = [refresh for _, refresh in await open_sessions(engine, users, count)]
    finally:
        await engine.dispose()
    await asyncio.to_thread(out.write_text, "\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
