"""What the pages tell a person: form errors in sentences, where a mail went, a remembered email.

The JSON API keeps its own messages (SPEC §3); only what a browser shows is worded here.
"""

from __future__ import annotations

from typing import Any

from quart import session

from ..state import services

# How the summary above a form names each field; the field's own label is beside its message.
FIELD_NOUNS = {
    "name": "the name",
    "email": "the email address",
    "password": "the password",
    "current_password": "the current password",
    "new_password": "the new password",
    "token": "the token",
}
MAIL_NOT_SET_UP = "Mail is not set up on this server (MAIL_URL is unset)"
NOT_SET_UP = "mail is not set up on this server (MAIL_URL is unset)"  # mid-sentence
SIGNUP_EMAIL = "signup_email"  # the session key that carries the address from signup to login


# Fields a person does not type (a mailed link's token): the summary gives the reason itself.
UNTYPED_FIELDS = frozenset({"token"})


def form_summary(errors: dict[str, str]) -> str:
    """The sentences above a form that say what to correct."""
    untyped = [as_sentence(errors[field]) for field in errors if field in UNTYPED_FIELDS]
    typed = [field for field in errors if field not in UNTYPED_FIELDS]
    return " ".join([*untyped, *([_fields_to_check(typed)] if typed else [])])


def _fields_to_check(fields: list[str]) -> str:
    nouns = [FIELD_NOUNS.get(field, f"the {field.replace('_', ' ')}") for field in fields]
    if len(nouns) == 1:
        return f"Please check {nouns[0]} below."
    listed = ", ".join(nouns[:-1]) + f" and {nouns[-1]}"
    return f"Please check the {len(nouns)} fields below: {listed}."


def as_sentence(reason: str) -> str:
    """A validation reason as a sentence: capital first letter, a full stop at the end."""
    text = reason.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def field_sentences(errors: dict[str, str]) -> dict[str, str]:
    """Each field's reason as the sentence shown next to it."""
    return {field: as_sentence(reason) for field, reason in errors.items()}


def mail_goes_to_log() -> bool:
    """Whether mails are written to the server log (MAIL_URL unset) instead of being sent."""
    return services().settings.mail_url is None


def template_context() -> dict[str, Any]:
    """What every page may need to say where a mail went."""
    return {"mail_to_log": mail_goes_to_log(), "mail_not_set_up": NOT_SET_UP}


def reset_sent() -> str:
    """After "forgot password": the same words for every address, so none is revealed."""
    if mail_goes_to_log():
        return (
            "If an account exists for that address, a link to choose a new password has been "
            f"written to the server log: {NOT_SET_UP}. The link is valid for 30 minutes."
        )
    return (
        "If an account exists for that address, we have sent it a link to choose a new "
        "password. The link is valid for 30 minutes."
    )


def verification_sent(email: str) -> str:
    """After a signed-in person asks for a new verification link."""
    if mail_goes_to_log():
        return (
            f"{MAIL_NOT_SET_UP}, so the new verification link was written to the server log "
            "instead of being mailed."
        )
    return f"We have sent a new verification link to {email}."


def verification_resent() -> str:
    """After someone not signed in names an address for a new link (no enumeration either)."""
    if mail_goes_to_log():
        return (
            "If that address has an account waiting for verification, a new link has been "
            f"written to the server log: {NOT_SET_UP}."
        )
    return "If that address has an account waiting for verification, we have sent it a new link."


def not_verified() -> str:
    """Why the login page refuses an unverified account (REQUIRE_VERIFIED_EMAIL)."""
    where = (
        f"the link written to the server log ({NOT_SET_UP})"
        if mail_goes_to_log()
        else "the link we mailed you"
    )
    return (
        f"Please verify your email address before logging in: open {where}, "
        "or ask for a new one at /verify."
    )


def remember_email(email: str) -> None:
    """Carry the address to the next login page in the signed session cookie, not the URL."""
    session[SIGNUP_EMAIL] = email


def recalled_email() -> str | None:
    """The address remembered by remember_email, once."""
    value = session.pop(SIGNUP_EMAIL, None)
    return value if isinstance(value, str) else None
