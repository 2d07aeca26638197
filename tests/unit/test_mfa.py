"""The second factor's core (quart_auth_app/mfa.py), with a clock the test drives."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest
from cryptography.fernet import Fernet
from quart import Quart
from sqlalchemy import select, update

from quart_auth_app.errors import Conflict, InvalidInput, ServiceUnavailable
from quart_auth_app.mfa import (
    CHALLENGE_ATTEMPTS,
    RECOVERY_CODES,
    SecondFactor,
    SecretBox,
    derived_key,
    matching_step,
)
from quart_auth_app.models import MfaChallenge, UserTotp
from quart_auth_app.testing import db_session, make_user

# A moment in the middle of a 30-second step, so ±1 step is unambiguous.
T0 = 1_800_000_015.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([Fernet.generate_key()])


@pytest.fixture
def factor(box: SecretBox, clock: Clock) -> SecondFactor:
    return SecondFactor(box, "quart_auth_app", clock)


async def enrolled(app: Quart, factor: SecondFactor) -> tuple[Any, pyotp.TOTP, list[str]]:
    """A user with TOTP on (confirmed with the code of T0 - 30 s), its TOTP and recovery codes."""
    user = await make_user(app, email="totp@example.com")
    async with db_session(app) as db:
        enrollment = await factor.begin(db, user)
        totp = pyotp.TOTP(enrollment.secret)
        codes = await factor.confirm(db, user.id, totp.at(T0 - 30))
    return user, totp, codes


def test_a_code_matches_its_own_step_and_one_either_side() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(T0)
    assert matching_step(secret, totp.at(T0), T0) == step
    assert matching_step(secret, totp.at(T0 - 30), T0) == step - 1
    assert matching_step(secret, totp.at(T0 + 30), T0) == step + 1
    assert matching_step(secret, totp.at(T0 - 60), T0) is None
    assert matching_step(secret, totp.at(T0 + 60), T0) is None
    assert matching_step(secret, "12345", T0) is None
    assert matching_step(secret, "abcdef", T0) is None


async def test_codes_two_steps_away_are_refused(app: Quart, factor: SecondFactor) -> None:
    user, totp, _ = await enrolled(app, factor)
    async with db_session(app) as db:
        assert not await factor.check_totp(db, user.id, totp.at(T0 - 60))
        assert not await factor.check_totp(db, user.id, totp.at(T0 + 60))


async def test_a_code_is_accepted_once_and_older_steps_after_it_never(
    app: Quart, factor: SecondFactor, clock: Clock
) -> None:
    user, totp, _ = await enrolled(app, factor)  # confirmed with the step before T0
    async with db_session(app) as db:
        assert not await factor.check_totp(db, user.id, totp.at(T0 - 30))  # replay
        assert await factor.check_totp(db, user.id, totp.at(T0 + 30))  # the next step
        assert not await factor.check_totp(db, user.id, totp.at(T0 + 30))  # replay
        assert not await factor.check_totp(db, user.id, totp.at(T0))  # older than the last
        clock.now = T0 + 60
        assert await factor.check_totp(db, user.id, totp.at(T0 + 60))
        step = await db.scalar(select(UserTotp.last_step).where(UserTotp.user_id == user.id))
    assert step == totp.timecode(T0 + 60)


async def test_confirmation_needs_a_good_code_and_happens_once(
    app: Quart, factor: SecondFactor
) -> None:
    user = await make_user(app, email="late@example.com")
    async with db_session(app) as db:
        with pytest.raises(Conflict):
            await factor.confirm(db, user.id, "123456")  # nothing begun
        totp = pyotp.TOTP((await factor.begin(db, user)).secret)
        assert not await factor.enabled(db, user.id)
        with pytest.raises(InvalidInput):
            await factor.confirm(db, user.id, totp.at(T0 + 90))
        codes = await factor.confirm(db, user.id, totp.at(T0))
        assert len(codes) == RECOVERY_CODES == len(set(codes))
        assert await factor.enabled(db, user.id)
        with pytest.raises(Conflict):
            await factor.begin(db, user)


async def test_the_secret_is_stored_encrypted(
    app: Quart, factor: SecondFactor, box: SecretBox
) -> None:
    user = await make_user(app, email="sealed@example.com")
    async with db_session(app) as db:
        enrollment = await factor.begin(db, user)
        stored = await db.scalar(select(UserTotp.secret).where(UserTotp.user_id == user.id))
    assert stored is not None
    assert enrollment.secret.encode() not in stored
    assert box.open(stored) == (enrollment.secret, False)
    assert enrollment.otpauth_uri.startswith("otpauth://totp/quart_auth_app:sealed%40example.com?")
    assert f"secret={enrollment.secret}" in enrollment.otpauth_uri


async def test_recovery_codes_work_once_and_regenerating_kills_the_old_set(
    app: Quart, factor: SecondFactor
) -> None:
    user, _, codes = await enrolled(app, factor)
    async with db_session(app) as db:
        assert await factor.use_recovery_code(db, user.id, codes[0].upper())  # any case
        assert not await factor.use_recovery_code(db, user.id, codes[0])
        assert await factor.remaining_codes(db, user.id) == RECOVERY_CODES - 1
        assert await factor.codes_are_live(db, user.id, codes[1:])
        fresh = await factor.regenerate(db, user.id)
        assert not await factor.use_recovery_code(db, user.id, codes[1])
        assert not await factor.codes_are_live(db, user.id, codes[1:])
        assert await factor.use_recovery_code(db, user.id, fresh[1].replace("-", ""))
        other = await make_user(app, email="other@example.com")
        assert not await factor.use_recovery_code(db, other.id, fresh[2])  # not theirs


async def test_a_challenge_lives_five_minutes(
    app: Quart, factor: SecondFactor, clock: Clock
) -> None:
    user = await make_user(app, email="slow@example.com")
    async with db_session(app) as db:
        token = await factor.open_challenge(db, user.id)
        stored = await db.scalar(select(MfaChallenge.digest))
        assert stored is not None and token.encode() not in stored
        clock.now = T0 + 299
        assert await factor.challenge_user(db, token) == user.id
        clock.now = T0 + 301
        assert await factor.challenge_user(db, token) is None
        assert not await factor.close_challenge(db, token)


async def test_a_challenge_dies_after_five_wrong_codes_and_once_used(
    app: Quart, factor: SecondFactor
) -> None:
    user = await make_user(app, email="guess@example.com")
    async with db_session(app) as db:
        token = await factor.open_challenge(db, user.id)
        for _ in range(CHALLENGE_ATTEMPTS - 1):
            await factor.fail_challenge(db, token)
        assert await factor.challenge_user(db, token) == user.id
        await factor.fail_challenge(db, token)
        assert await factor.challenge_user(db, token) is None
        second = await factor.open_challenge(db, user.id)
        assert await factor.close_challenge(db, second)
        assert not await factor.close_challenge(db, second)  # single use
        assert await factor.challenge_user(db, second) is None


async def test_a_secret_sealed_with_an_older_key_is_resealed_with_the_first(
    app: Quart, clock: Clock
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    before = SecondFactor(SecretBox([old]), "quart_auth_app", clock)
    user, totp, _ = await enrolled(app, before)
    rotated = SecondFactor(SecretBox([new, old]), "quart_auth_app", clock)
    async with db_session(app) as db:
        assert await rotated.check_totp(db, user.id, totp.at(T0))
        stored = await db.scalar(select(UserTotp.secret).where(UserTotp.user_id == user.id))
    assert stored is not None
    assert SecretBox([new]).open(stored) == (totp.secret, False)


async def test_a_secret_no_configured_key_opens_is_a_503_not_a_wrong_code(
    app: Quart, clock: Clock, factor: SecondFactor
) -> None:
    user, totp, _ = await enrolled(app, factor)
    stranger = SecondFactor(SecretBox([Fernet.generate_key()]), "quart_auth_app", clock)
    async with db_session(app) as db:
        with pytest.raises(ServiceUnavailable):
            await stranger.check_totp(db, user.id, totp.at(T0))


async def test_two_requests_racing_with_one_code_cannot_both_win(
    app: Quart, factor: SecondFactor
) -> None:
    user, totp, _ = await enrolled(app, factor)
    async with db_session(app) as first, db_session(app) as second:
        row = await first.get(UserTotp, user.id)
        assert row is not None
        await second.execute(
            update(UserTotp).where(UserTotp.user_id == user.id).values(last_step=totp.timecode(T0))
        )
        await second.commit()
        # `first` still holds the row as it was before the other request's code: only the
        # conditional write can tell it the step is taken.
        assert row.last_step == totp.timecode(T0 - 30)
        assert not await factor.check_totp(first, user.id, totp.at(T0))


def test_the_derived_key_depends_on_the_secret_key() -> None:
    one, two = derived_key("a" * 40), derived_key("b" * 40)
    assert one != two
    Fernet(one)  # a valid Fernet key
