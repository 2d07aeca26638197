"""A real SMTP server (aiosmtpd) for the tests that follow mail: fixtures `inbox`, `smtp_server`.

Registered for every test in tests/conftest.py (`pytest_plugins`). A module whose app sends mail
points its `app_config` at the server with `with_mail`.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from .servers import free_port


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.original_content)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp_server(inbox: Inbox) -> Iterator[Controller]:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def with_mail(app_config: dict[str, Any], smtp_server: Controller) -> dict[str, Any]:
    """The app's settings with mail sent to `smtp_server`.

    Real SMTP needs a configured base for links (tests/web/test_mail_host.py): the test client's.
    """
    return {
        **app_config,
        "MAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "PUBLIC_URL": "http://localhost",
    }
