"""What one request has learnt so far, in one typed object (Quart's `g` holds only this)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import Quart, current_app, g
from sqlalchemy.ext.asyncio import AsyncSession

from ..faults import describe, is_store_failure
from ..models import User
from ..outbox import MailSender
from ..services import Services
from ..tokens import Claims

if TYPE_CHECKING:
    from .sockets import Channel

log = logging.getLogger(__name__)


@dataclass
class Caller:
    """The authenticated user behind the request and the claims of the token that proved it.

    For a personal access token the claims name no session (`session_id` is "") and `jti` is
    the token's id.
    """

    user: User
    claims: Claims
    # None: a login session, limited by its user's roles only; else the PAT's scopes.
    scopes: frozenset[str] | None = None


@dataclass
class FormPage:
    """The page a browser sees again, with its message, when the form it posted is refused."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestState:
    """Everything the edge remembers while it answers one request."""

    caller: Caller | None = None
    # A browser refused here is sent to the login page rather than shown an error page.
    protected: bool = False
    form: FormPage | None = None
    # The submitted text fields, for re-rendering a refused form and reading `next`.
    form_values: dict[str, str] = field(default_factory=dict)
    db: AsyncSession | None = None
    # The open websocket of a token_required websocket view.
    socket: Channel | None = None


def state() -> RequestState:
    """The current request's state, created on first use."""
    found: RequestState | None = g.get("state")
    if found is None:
        found = RequestState()
        g.state = found
    return found


def services() -> Services:
    """The current app's services (built when it started serving)."""
    found: Services = current_app.extensions["services"]
    return found


def mail_sender() -> MailSender:
    """The current worker's outbox sender (started with the app)."""
    found: MailSender = current_app.extensions["mail_sender"]
    return found


def request_db() -> AsyncSession:
    """The current request's database session, opened on first use."""
    current = state()
    if current.db is None:
        current.db = services().db_sessions()
    return current.db


def init_app(app: Quart) -> None:
    """Close each request's database session when the request ends."""

    @app.teardown_appcontext
    async def close_session(_exc: BaseException | None) -> None:
        found: RequestState | None = g.get("state")
        session = found.db if found is not None else None
        # A session holds a connection only inside a transaction; one never used, or whose
        # last transaction ended, has nothing to give back.
        if session is not None and session.in_transaction():
            # Shielded: a shutdown still cancels requests, and a rollback cut short leaves an
            # SQLite connection holding the write lock.
            try:
                await asyncio.shield(session.close())
            except Exception as error:
                if not is_store_failure(error):
                    raise
                # The answer is made; a failure here must not turn it into a 500. SQLAlchemy
                # has dropped the connection (db.py), the next request gets another.
                log.warning("closing a request's database session: %s", describe(error))
