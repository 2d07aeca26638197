"""The `quart-auth-app` console script: serve, db upgrade, create-user, roles, import-flask-db
(SPEC §8, §10)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from . import db
from .admin import Change, change_user, record
from .config import ConfigError, Settings, load_settings
from .errors import AppError
from .importer import ImportFailed, import_users, read_tutorial_users
from .lookups import find_by_email
from .migrate import (
    SchemaProblem,
    behind_message,
    schema_behind,
    schema_revision,
    upgrade_database,
)
from .models import User
from .permissions import checked_names
from .roles import grant, roles_of
from .rules import check_email, check_name, check_new_password
from .serve import (
    DEFAULT_BIND,
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_SERVER,
    SERVERS,
    BadBind,
    ServeOptions,
    graceful_seconds,
    parse_bind,
    serve,
)
from .services import password_hasher
from .users import create_user, mark_verified

T = TypeVar("T")
PROG = "quart-auth-app"
# Who the audit log names for a change made at the console.
CONSOLE = "console"
Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]
# A command that runs outside asyncio: `serve` forks workers, which must not inherit a loop.
BlockingCommand = Callable[[Settings, argparse.Namespace], int]


class CommandFailed(Exception):
    """A command could not do its job; the message is printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate a quart_auth_app deployment. Settings come from the environment "
        "(DATABASE_URL, SECRET_KEY, ...), as for the server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_db(commands)
    _add_create_user(commands)
    _add_roles(commands)
    _add_import(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("quart_auth_app")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = commands.add_parser(
        "serve",
        help="run the production server (several workers; a dead worker is replaced)",
        description="Serve the app built from the environment. The settings are checked once "
        "first: a configuration error is one line and exit status 2. Under the default server "
        "(granian) a worker that dies is replaced while the others serve, and SIGTERM lets "
        "every in-flight request finish (up to --graceful-timeout) before exiting 0. "
        "--server hypercorn runs hypercorn's own master instead (see docs/deployment.md).",
    )
    server.add_argument(
        "--bind",
        type=_bind_argument,
        default=parse_bind(DEFAULT_BIND),
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_BIND}; [::]:8000 for IPv6)",
    )
    server.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes (default: the number of CPUs)",
    )
    server.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default=DEFAULT_SERVER,
        help=f"the ASGI server (default {DEFAULT_SERVER})",
    )
    server.add_argument(
        "--graceful-timeout",
        type=_graceful_argument,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help="how long in-flight requests may take to finish after SIGTERM "
        f"(default {DEFAULT_GRACEFUL_TIMEOUT})",
    )
    server.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one log line per request (default: on)",
    )
    server.set_defaults(run_blocking=run_serve)


def _bind_argument(value: str) -> tuple[str, int]:
    try:
        return parse_bind(value)
    except BadBind as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def _graceful_argument(value: str) -> int:
    try:
        return graceful_seconds(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r}: {error}") from None


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    database = commands.add_parser("db", help="database schema migrations")
    actions = database.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade", help="apply pending Alembic migrations (safe to run from several hosts)"
    )
    upgrade.set_defaults(run=run_db_upgrade)


def _add_create_user(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    create = commands.add_parser(
        "create-user", help="create a user; the password is asked for without echo"
    )
    create.add_argument("name", help="display name (1-100 characters)")
    create.add_argument("email", help="email address (unique, case-insensitively)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )
    create.add_argument("--verified", action="store_true", help="mark the email as verified")
    create.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="ROLE",
        dest="roles",
        help="give the user a role, e.g. admin (repeat for more)",
    )
    create.set_defaults(run=run_create_user, ask=ask_password)


def _add_roles(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    roles = commands.add_parser(
        "roles",
        help="grant, revoke or list a user's roles (admin is built in)",
        description="A change holds on the user's next request. The last active admin cannot "
        "lose the admin role.",
    )
    actions = roles.add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    for name, run, text in (
        ("grant", run_roles_grant, "give the user a role"),
        ("revoke", run_roles_revoke, "take a role from the user"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("email", help="the user's email address")
        action.add_argument("role", help="a role name: a-z first, then a-z 0-9 _ . : -")
        action.set_defaults(run=run)
    listing = actions.add_parser("list", help="print the user's roles, one a line")
    listing.add_argument("email", help="the user's email address")
    listing.set_defaults(run=run_roles_list)


def _add_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    importer = commands.add_parser(
        "import-flask-db",
        help="import users from the Flask tutorial's SQLite database (idempotent)",
        description="Copy the `user` table of the Flask JWT tutorial's Database.db: public_id, "
        "name and email are kept, old werkzeug password hashes keep working and are upgraded "
        "to argon2id at each user's next login. Rows already imported are left alone.",
    )
    importer.add_argument("path", type=Path, metavar="PATH", help="the tutorial's Database.db")
    importer.set_defaults(run=run_import)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        _fail(f"configuration error: {error}")
        return 2
    blocking: BlockingCommand | None = getattr(args, "run_blocking", None)
    if blocking is not None:
        return blocking(settings, args)
    command: Command = args.run
    ask: Callable[[argparse.Namespace], None] | None = getattr(args, "ask", None)
    try:
        if ask is not None:
            # Before the event loop starts: asyncio.run() turns the first Ctrl-C into a
            # cancellation that a prompt blocked in read() would only see after Enter.
            ask(args)
        return asyncio.run(command(settings, args))
    except CommandFailed as error:
        _fail(str(error))
        return 1
    except KeyboardInterrupt:
        _end_prompt_line()
        return 130


def _fail(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def run_serve(_settings: Settings, args: argparse.Namespace) -> int:
    """`serve`: build the app once here, then hand over to the server's master.

    Importing `asgi` builds the app as a worker would (keys included) and ends the process with
    one line and status 2 on a configuration error, before any worker exists.
    """
    from . import asgi  # noqa: F401

    host, port = args.bind
    options = ServeOptions(
        host=host,
        port=port,
        workers=args.workers,
        server=args.server,
        graceful_timeout=args.graceful_timeout,
        access_log=args.access_log,
    )
    return serve(options)


async def run_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    """`db upgrade`: bring the schema to the latest revision."""
    await _upgrade(settings)
    print("database schema is up to date")
    return 0


async def _upgrade(settings: Settings) -> None:
    try:
        await upgrade_database(settings.database_url, settings.instance_path)
    except SchemaProblem as problem:
        raise CommandFailed(str(problem)) from None
    except (SQLAlchemyError, OSError) as error:
        raise CommandFailed(_database_problem(error)) from None


def _database_problem(error: BaseException) -> str:
    """One line about a database failure, without SQL parameters (they may hold hashes)."""
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).splitlines() or [""])[0]
    return f"database error: {type(cause).__name__}: {first_line}"


async def run_create_user(settings: Settings, args: argparse.Namespace) -> int:
    """`create-user NAME EMAIL`: register a user with the password ask_password() read."""
    password: str = args.password
    name, email = (
        _checked("name", check_name, args.name),
        _checked("email", check_email, args.email),
    )
    password = _checked("password", check_new_password, password)
    roles = _checked_roles(args.roles)
    hasher = password_hasher(settings)

    async def create(session: AsyncSession) -> User:
        user = await create_user(session, hasher, name, email, password)
        if args.verified:
            await mark_verified(session, user.id)
        for role in roles:
            await grant(session, user.id, role)
            record(CONSOLE, "grant_role", user, {"role": role})
        return user

    try:
        user = await _with_session(settings, create)
    except AppError as error:
        raise CommandFailed(_app_error_line(error)) from None
    finally:
        hasher.close()
    held = f" with roles {', '.join(roles)}" if roles else ""
    print(f"created user {user.email} (public_id {user.public_id}){held}")
    return 0


def _checked_roles(names: Sequence[str]) -> list[str]:
    try:
        return sorted(checked_names(names, "role"))
    except ValueError as error:
        raise CommandFailed(f"role: {error}") from None


async def _user_named(session: AsyncSession, email: str) -> User:
    user = await find_by_email(session, email)
    await session.commit()
    if user is None:
        raise CommandFailed(f"no user with the email {email!r}")
    return user


async def run_roles_grant(settings: Settings, args: argparse.Namespace) -> int:
    """`roles grant EMAIL ROLE`."""
    (role,) = _checked_roles([args.role])

    async def work(session: AsyncSession) -> tuple[User, bool]:
        user = await _user_named(session, args.email)
        added = await grant(session, user.id, role)
        record(CONSOLE, "grant_role", user, {"role": role})
        return user, added

    user, added = await _with_session(settings, work)
    print(f"{user.email} {'now has' if added else 'already had'} the role {role}")
    return 0


async def run_roles_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """`roles revoke EMAIL ROLE`: refused for the last active admin's admin role."""
    (role,) = _checked_roles([args.role])

    async def work(session: AsyncSession) -> User:
        user = await _user_named(session, args.email)
        try:
            before = await change_user(
                session, user.public_id, Change(drop_roles=frozenset([role]))
            )
        except AppError as error:
            raise CommandFailed(_app_error_line(error)) from None
        record(CONSOLE, "revoke_role", before, {"role": role})
        return before

    before = await _with_session(settings, work)
    held = role in before.roles
    print(f"{before.email} {'no longer has' if held else 'did not have'} the role {role}")
    return 0


async def run_roles_list(settings: Settings, args: argparse.Namespace) -> int:
    """`roles list EMAIL`: one role a line (nothing for a user without roles)."""

    async def work(session: AsyncSession) -> list[str]:
        user = await _user_named(session, args.email)
        return await roles_of(session, user.id)

    for role in await _with_session(settings, work):
        print(role)
    return 0


def ask_password(args: argparse.Namespace) -> None:
    """Read create-user's password: the first line of stdin, or twice at the terminal."""
    if args.password_stdin:
        if sys.stdin is None:  # started with standard input closed
            raise CommandFailed("--password-stdin: standard input is closed")
        args.password = sys.stdin.readline().rstrip("\r\n")
        return
    if not has_terminal():
        # getpass would fall back to reading stdin with echo on, or fail at its end.
        raise CommandFailed("no terminal to ask for the password: use --password-stdin")
    try:
        password = getpass.getpass("Password: ")
        repeated = getpass.getpass("Repeat password: ")
    except EOFError:
        _end_prompt_line()
        raise CommandFailed("no password given (end of input at the prompt)") from None
    if repeated != password:
        raise CommandFailed("the passwords do not match")
    args.password = password


def _end_prompt_line() -> None:
    # getpass leaves the cursor after "Password: " when it is interrupted.
    if sys.stderr.isatty():
        print(file=sys.stderr)


def has_terminal() -> bool:
    """Whether getpass can prompt without echo: the process has a terminal, as getpass looks."""
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return sys.stdin is not None and sys.stdin.isatty()


def _checked(field: str, rule: Callable[[str], str], value: str) -> str:
    """The value as the input rule normalises it, else the rule's reason as one line."""
    try:
        return rule(value)
    except ValueError as error:
        raise CommandFailed(f"{field}: {error}") from None


def _app_error_line(error: AppError) -> str:
    details = "; ".join(f"{field}: {reason}" for field, reason in (error.errors or {}).items())
    return details or error.message


async def run_import(settings: Settings, args: argparse.Namespace) -> int:
    """`import-flask-db PATH`: copy the tutorial's users, then print what happened."""
    try:
        rows = await read_tutorial_users(args.path)
    except ImportFailed as error:
        raise CommandFailed(str(error)) from None
    report = await _with_session(settings, lambda s: import_users(s, rows))
    for line in report.lines():
        print(line)
    return 0


async def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one session; the embedded SQLite database is migrated first, as at start.

    A PostgreSQL schema that is behind is refused with the command that fixes it.
    """
    if db.is_sqlite(settings.database_url):
        await _upgrade(settings)
    engine = db.create_engine(settings)
    try:
        if not db.is_sqlite(settings.database_url):
            async with engine.connect() as connection:
                found = await schema_revision(connection)
            if schema_behind(found):
                raise CommandFailed(behind_message(found))
        async with db.session_factory(engine)() as session:
            return await work(session)
    except (SQLAlchemyError, OSError) as error:
        raise CommandFailed(_database_problem(error)) from None
    finally:
        await engine.dispose()
