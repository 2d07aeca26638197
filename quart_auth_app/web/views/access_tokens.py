"""Personal access tokens over HTTP (SPEC §10): make, list and revoke the caller's own.

Only a login session manages tokens: a token can neither make another nor revoke one.
"""

from __future__ import annotations

from quart import Blueprint, current_app, jsonify
from quart.typing import ResponseReturnValue

from ... import access_tokens
from ...access_tokens import NewToken, known_scopes, scope_list
from ...errors import NotFound
from ...models import AccessToken, User
from ..auth import declared_scopes, token_required
from ..forms import form_input, model_json, no_content
from ..schemas import AccessTokenOut, AccessTokensOut, NewAccessTokenIn, NewAccessTokenOut
from ..state import request_db

blueprint = Blueprint("access_tokens", __name__)

SCOPES_FIELD = ("scopes",)  # a form sends one `scopes` field per ticked box


def app_scopes() -> frozenset[str]:
    """The scopes a token of this app may be given: built-in ones and every route's."""
    return known_scopes(declared_scopes(current_app))


def token_out(row: AccessToken) -> AccessTokenOut:
    """A token as listings show it: never its secret."""
    return AccessTokenOut(
        id=row.id,
        name=row.name,
        scopes=row.scopes.split(),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


async def make_token(user: User, body: NewAccessTokenIn) -> NewToken:
    """Make the token a validated body asks for (JSON route and account page)."""
    scopes = access_tokens.checked_scopes(body.scopes, app_scopes())
    return await access_tokens.create(request_db(), user, body.name, scopes, body.expires_in_days)


@blueprint.post("/me/tokens")
@token_required(fresh=True, session_only=True)
async def create_token(user: User) -> ResponseReturnValue:
    body = await form_input(NewAccessTokenIn, lists=SCOPES_FIELD)
    made = await make_token(user, body)
    out = NewAccessTokenOut(
        id=made.row.id,
        name=made.row.name,
        token=made.secret,
        scopes=made.row.scopes.split(),
        created_at=made.row.created_at,
        expires_at=made.row.expires_at,
    )
    response = jsonify(out.model_dump(mode="json"))
    response.headers["Cache-Control"] = "no-store"  # the secret must not linger in a cache
    return response, 201


@blueprint.get("/me/tokens")
@token_required(session_only=True)
async def list_tokens(user: User) -> ResponseReturnValue:
    rows = await access_tokens.list_live(request_db(), user.id)
    out = AccessTokensOut(
        tokens=[token_out(row) for row in rows], known_scopes=scope_list(app_scopes())
    )
    return model_json(out)


@blueprint.delete("/me/tokens/<token_id>")
@token_required(session_only=True)
async def revoke_token(user: User, token_id: str) -> ResponseReturnValue:
    if not await access_tokens.revoke(request_db(), user, token_id):
        raise NotFound("Access token not found")
    return no_content()
