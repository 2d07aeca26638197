"""Mail-driven flows: email verification and password reset (built out with SPEC §6)."""

from __future__ import annotations

from .models import User


async def send_verification(user: User) -> None:
    """Send the user a link that verifies their address."""
    return None
