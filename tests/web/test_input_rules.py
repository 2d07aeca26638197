"""SPEC §7 input rules: names, emails, passwords, the common-password list, unknown fields."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quart import Quart
from sqlalchemy import select

from quart_auth_app.models import User
from quart_auth_app.rules import (
    PLAIN_EMAIL,
    check_email,
    check_name,
    check_new_password,
    common_passwords,
    email_key,
    is_common_password,
)
from quart_auth_app.testing import db_session

from ..conftest import BROWSER

GOOD = {"name": "Bea", "email": "bea@example.com", "password": "correct horse battery"}


async def signup(client: Any, **changes: Any) -> Any:
    return await client.post("/signup", json={**GOOD, **changes})


async def errors_of(response: Any) -> dict[str, str]:
    assert response.status_code == 400
    body = await response.get_json()
    assert isinstance(body["message"], str) and body["message"]
    errors: dict[str, str] = body["errors"]
    return errors


async def stored_user(app: Quart, email: str) -> User | None:
    async with db_session(app) as db:
        query = select(User).where(User.email == email)
        return (await db.execute(query)).scalar_one_or_none()


# Names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "x" * 101, " " + "y" * 101 + " "])
async def test_names_must_have_1_to_100_characters_after_trimming(client: Any, name: str) -> None:
    assert "name" in await errors_of(await signup(client, name=name))


@pytest.mark.parametrize(
    "name", ["a\x00b", "bell\x07", "new\nline", "tab\tbed", "rtl\u202eoverride"]
)
async def test_names_refuse_control_characters(client: Any, name: str) -> None:
    assert "name" in await errors_of(await signup(client, name=name))


async def test_names_are_trimmed_and_may_use_any_script(client: Any) -> None:
    response = await signup(client, name="  Zoë 李 O'Brien-Ñúñez  ")
    assert response.status_code == 201
    assert (await response.get_json())["name"] == "Zoë 李 O'Brien-Ñúñez"


async def test_a_100_character_name_is_accepted(client: Any) -> None:
    assert (await signup(client, name="n" * 100)).status_code == 201


def test_check_name_directly() -> None:
    assert check_name("  Ann ") == "Ann"
    with pytest.raises(ValueError, match="control"):
        check_name("A\u200bnn")


# Emails ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plainaddress",
        "@example.com",
        "bea@",
        "bea@@example.com",
        "bea@exa mple.com",
        "bea@example..com",
        "a" * 65 + "@example.com",
        "bea@" + "d" * 64 + ".com",
        "bea@localhost",
    ],
)
async def test_invalid_emails_are_refused(client: Any, email: str) -> None:
    assert "email" in await errors_of(await signup(client, email=email))


async def test_emails_are_normalised_without_dns(app: Quart, client: Any) -> None:
    # .example is reserved: it resolves nowhere, so this passes only without a DNS look-up.
    response = await signup(client, email="  Bea@Mail.EXAMPLE.com ")
    assert response.status_code == 201
    assert (await response.get_json())["email"] == "Bea@mail.example.com"
    assert await stored_user(app, "Bea@mail.example.com") is not None


async def test_internationalised_emails_are_normalised(client: Any) -> None:
    response = await signup(client, email="bea@Bücher.example")
    assert response.status_code == 201
    assert (await response.get_json())["email"] == "bea@bücher.example"


async def test_case_variants_are_one_account(client: Any) -> None:
    assert (await signup(client)).status_code == 201
    again = await signup(client, email="BEA@EXAMPLE.COM")
    assert again.status_code == 400
    assert (await again.get_json())["message"] == "User already exists. Please login."


def test_check_email_directly() -> None:
    assert check_email("x@EXAMPLE.org") == "x@example.org"
    with pytest.raises(ValueError):
        check_email("x@exa\x00mple.org")


# Passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["", "1234567", "short", "ab\u00e9cd"])
async def test_passwords_need_8_characters(client: Any, password: str) -> None:
    assert "password" in await errors_of(await signup(client, password=password))


async def test_passwords_may_be_1024_characters_not_more(client: Any) -> None:
    assert "password" in await errors_of(await signup(client, password="p" * 1025))
    assert (await signup(client, password="q" * 1024)).status_code == 201


@pytest.mark.parametrize(
    "password",
    ["alllowercaseletters", "😀😀😀😀😀😀😀😀", "пароль для входа", "        spaces ok", "é" * 8],
)
async def test_no_composition_rules_any_unicode(client: Any, password: str) -> None:
    response = await signup(client, password=password)
    assert response.status_code == 201
    login = await client.post("/login", json={"email": GOOD["email"], "password": password})
    assert login.status_code == 200


async def test_length_counts_characters_not_bytes(client: Any) -> None:
    # 8 characters, 32 bytes in UTF-8; 1024 emoji are 4096 bytes and still allowed.
    assert (await signup(client, password="🔑" * 8)).status_code == 201
    assert (await signup(client, email="b2@example.com", password="🔒" * 1024)).status_code == 201


@pytest.mark.parametrize("password", ["pass\x00word-long", "\x00" * 10])
async def test_passwords_refuse_nul(client: Any, password: str) -> None:
    assert "password" in await errors_of(await signup(client, password=password))


async def test_passwords_refuse_lone_surrogates(client: Any) -> None:
    raw = b'{"name": "Bea", "email": "bea@example.com", "password": "abcdefgh\\ud800"}'
    response = await client.post("/signup", data=raw, headers={"Content-Type": "application/json"})
    assert "password" in await errors_of(response)


@pytest.mark.parametrize(
    "password",
    [
        "password",
        "12345678",
        "Password1",
        "qwerty123",
        "iloveyou",
        "PASSW0RD",
        "trustno1",
        "football",
        "1q2w3e4r",
        "baseball1",
    ],
)
async def test_common_passwords_are_refused(client: Any, password: str) -> None:
    errors = await errors_of(await signup(client, password=password))
    assert "common" in errors["password"]


def test_the_common_list_is_real() -> None:
    listed = common_passwords()
    assert len(listed) >= 10_000
    # Spot checks from the top, the middle and the tail of the shipped lists.
    for password in ("123456", "password", "dragon", "sunshine", "welcome123", "newpassword"):
        assert is_common_password(password), password
    assert not is_common_password("correct horse battery")
    assert all(entry == entry.lower() for entry in listed)


def test_check_new_password_directly() -> None:
    assert check_new_password("a decent passphrase") == "a decent passphrase"
    with pytest.raises(ValueError, match="common"):
        check_new_password("LetMeIn123")


async def test_login_passwords_are_bounded_but_not_judged(client: Any) -> None:
    assert (await signup(client)).status_code == 201
    too_long = await client.post("/login", json={"email": GOOD["email"], "password": "x" * 1025})
    assert too_long.status_code == 400
    # A common or short password at login is simply wrong (401), never a hint about rules.
    short = await client.post("/login", json={"email": GOOD["email"], "password": "abc"})
    assert short.status_code == 401


# Types and unknown fields ----------------------------------------------------------------


@pytest.mark.parametrize("value", [42, 4.2, True, None, ["Bea"], {"first": "Bea"}])
async def test_fields_must_be_strings(client: Any, value: Any) -> None:
    for field in ("name", "email", "password"):
        errors = await errors_of(await signup(client, **{field: value}))
        assert field in errors


async def test_every_error_is_reported_at_once(client: Any) -> None:
    response = await client.post("/signup", json={"name": "", "email": "x", "password": "y"})
    assert set(await errors_of(response)) == {"name", "email", "password"}


async def test_unknown_fields_are_ignored_never_assigned(app: Quart, client: Any) -> None:
    first = await signup(client, email="first@example.com")
    assert first.status_code == 201
    sneaky = await signup(
        client,
        id=1,
        email_verified=True,
        public_id="x",
        created_at="2000-01-01T00:00:00",
        is_admin=True,
    )
    assert sneaky.status_code == 201
    body = await sneaky.get_json()
    assert body["public_id"] not in ("x", (await first.get_json())["public_id"])
    user = await stored_user(app, GOOD["email"])
    assert user is not None
    assert user.id != 1 and user.public_id != "x" and user.email_verified is False
    assert user.created_at.year > 2000
    first_user = await stored_user(app, "first@example.com")
    assert first_user is not None and first_user.id == 1


async def test_browser_form_errors_rerender_with_field_reasons(client: Any) -> None:
    response = await client.post(
        "/signup",
        form={"name": "Bea", "email": "bea@example.com", "password": "password"},
        headers=BROWSER,
    )
    assert response.status_code == 400
    page = await response.get_data(as_text=True)
    assert "common" in page
    assert 'value="bea@example.com"' in page


def caseless(text: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def slow_lookup_key(given: str) -> str:
    """The key without the plain-address shortcut: normalised, then the local part folded."""
    try:
        local, _, domain = check_email(given).rpartition("@")
    except ValueError:
        return caseless(given)
    return f"{caseless(local)}@{domain}"


@pytest.mark.parametrize(
    "given",
    [
        "ann@example.com",
        "Ann.Lee+tag@Example.COM",
        "a..b@example.com",
        "ann@-example.com",
        "ann@localhost",
        "ann@example.test",
        "x" * 65 + "@example.com",
        "ann@xn--bcher-kva.example",
        "ANN@XN--BCHER-KVA.EXAMPLE",
        '"ann"@example.com',
        " ann@example.com ",
        "ann@bücher.example",
        "Ann <ann@example.com>",
        "not an email",
    ],
)
def test_an_account_is_looked_up_by_its_normalised_address(given: str) -> None:
    assert email_key(given) == slow_lookup_key(given)


@settings(max_examples=300, deadline=None)
@given(st.emails() | st.from_regex(PLAIN_EMAIL, fullmatch=True))
def test_plain_addresses_are_their_own_lookup_key(address: str) -> None:
    assert email_key(address) == slow_lookup_key(address)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12), st.sampled_from(["example.com", "Straße.Example"]))
def test_a_key_is_its_own_key(local: str, domain: str) -> None:
    # GivenEmail hands users.find_by_email a key, which takes the key of what it is given.
    key = email_key(f"{local}@{domain}")
    assert email_key(key) == key


async def test_login_finds_an_address_typed_differently(client: Any) -> None:
    assert (await signup(client, email="Bea@Bücher.Example")).status_code == 201
    for typed in ("bea@xn--bcher-kva.example", "BEA@BÜCHER.EXAMPLE", "Bea@bücher.example"):
        response = await client.post("/login", json={"email": typed, "password": GOOD["password"]})
        assert response.status_code == 200, typed
