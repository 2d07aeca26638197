"""The Flask tutorial "Using JWT for user authentication in Flask", as published, for comparison.

Only the routes the benchmark drives are kept (GET /dashboard); the token check is the tutorial's
own (`jwt_token` cookie, HS256, `User.query.filter_by(public_id=...)`). Served by gunicorn with
sync workers from bench/.venv-tutorial (see docs/performance.md).
"""

from __future__ import annotations

import os
from functools import wraps
from typing import Any

import jwt
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["TUTORIAL_DATABASE_URL"]
db = SQLAlchemy(app)


class User(db.Model):  # type: ignore[name-defined,misc]
    id = db.Column(db.Integer, primary_key=True)
    public_id = db.Column(db.String(50), unique=True)
    name = db.Column(db.String(100))
    email = db.Column(db.String(70), unique=True)
    password = db.Column(db.String(80))


def token_required(f: Any) -> Any:
    @wraps(f)
    def decorated(*args: Any, **kwargs: Any) -> Any:
        token = request.cookies.get("jwt_token")
        if not token:
            return jsonify({"message": "Token is missing!"}), 401
        try:
            data = jwt.decode(token, app.config["SECRET_KEY"], algorithms=["HS256"])
            current_user = User.query.filter_by(public_id=data["public_id"]).first()
        except Exception:  # the tutorial's bare except
            return jsonify({"message": "Token is invalid!"}), 401
        return f(current_user, *args, **kwargs)

    return decorated


@app.route("/dashboard")
@token_required
def dashboard(current_user: User) -> Any:
    return jsonify({"message": f"Welcome {current_user.name}! You are logged in."})


def seed(users: list[tuple[str, str, str, str]]) -> None:
    """Create the table and insert (public_id, name, email, password hash) rows."""
    with app.app_context():
        db.create_all()
        db.session.add_all(User(public_id=p, name=n, email=e, password=h) for p, n, e, h in users)
        db.session.commit()


if __name__ == "__main__":
    # `python tutorial_app.py seed N`: N users and one token per line on stdout (for wrk).
    import sys
    import uuid

    count = int(sys.argv[2])
    ids = [str(uuid.uuid4()) for _ in range(count)]
    seed([(pid, f"User {i}", f"user{i}@example.com", "unused") for i, pid in enumerate(ids)])
    for pid in ids:
        print(
            jwt.encode({"public_id": pid, "exp": 2_000_000_000}, app.config["SECRET_KEY"], "HS256")
        )
