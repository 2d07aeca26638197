"""`quart-auth-app serve`: the production server, a maintained master over several workers.

The default server is granian: its master replaces a worker that dies (`respawn_failed_workers`)
and, on SIGTERM, stops every worker together and waits for all of them to drain (up to the
graceful timeout) before it exits 0. Hypercorn stays available (`--server hypercorn`, also what
`hypercorn --config hypercorn.toml` runs); its master does neither: a worker that dies stops the
others and the master exits 0, and on SIGTERM it terminates the workers still draining once the
first one has finished (docs/deployment.md).

The settings are validated by the caller (cli.py) before anything here runs, so a configuration
error is one line and exit status 2 from the master, never once per worker.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# What the workers serve. The master has built it once already (the configuration check), so
# workers forked from it find the module imported and the app ready.
APP_TARGET = "quart_auth_app.asgi:app"
# Under granian the app writes the access line itself, granian's own being off (access_line.py).
GRANIAN_LOGGED_TARGET = "quart_auth_app.asgi:app_with_access_line"
DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_GRACEFUL_TIMEOUT = 10
# The limits of hypercorn.toml (the comments there say why), which every server is given in its
# own terms; the test suite checks that this copy and the file agree.
HEADERS_TIMEOUT = 5  # seconds for the request headers to be complete (slowloris)
MAX_HEADER_BYTES = 16384  # request line plus headers
BACKLOG = 1024
HYPERCORN_SETTINGS: dict[str, object] = {
    "worker_class": "asyncio",
    "keep_alive_timeout": HEADERS_TIMEOUT,
    "read_timeout": 30,
    "websocket_ping_interval": 15,
    "h11_max_incomplete_size": MAX_HEADER_BYTES,
    "backlog": BACKLOG,
}
HYPERCORN_ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus'
# No query string: a link's token (GET /verify?token=...) stays out of the log.
_BIND = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


class BadBind(ValueError):
    """`--bind` is not HOST:PORT."""


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` was asked for on its command line."""

    host: str
    port: int
    workers: int
    server: str
    graceful_timeout: int = DEFAULT_GRACEFUL_TIMEOUT
    access_log: bool = True

    @property
    def bind(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bind(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8000` for IPv6) as a host and a port number.

    The host is an IP address, not a name: granian binds addresses only.
    """
    match = _BIND.match(value)
    if match is None or not 0 <= int(match["port"]) <= 65535:
        raise BadBind(f"expected HOST:PORT (e.g. 0.0.0.0:8000 or [::]:8000), got {value!r}")
    host = match["ipv6"] or match["host"]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise BadBind(
            f"HOST must be an IP address (0.0.0.0, 127.0.0.1, [::]), got {host!r}"
        ) from None
    return host, int(match["port"])


def run_granian(options: ServeOptions) -> int:
    """Serve under granian's master in this process; returns the exit status."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    server = Granian(
        GRANIAN_LOGGED_TARGET if options.access_log else APP_TARGET,
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGI,  # with lifespan: before_serving opens the services
        workers=options.workers,
        respawn_failed_workers=True,
        # How long the master waits for the workers, all of them together, to drain.
        workers_kill_timeout=options.graceful_timeout,
        backlog=BACKLOG,
        # HTTP/1.1 only: while "auto" sniffs for HTTP/2, a silent connection is not under the
        # header timeout (it stayed open 30 s rather than 5).
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(
            header_read_timeout=1000 * HEADERS_TIMEOUT, max_buffer_size=MAX_HEADER_BYTES
        ),
        log_access=False,
    )
    # It exits with status 1 itself when a worker keeps dying (a crash loop) or cannot start.
    server.serve()
    return 0


def run_hypercorn(options: ServeOptions) -> int:
    """Serve under hypercorn's own master (its limits are in the module docstring)."""
    from hypercorn.config import Config
    from hypercorn.run import run

    from .access_log import QuickAccessLogger

    config = Config()
    for name, value in HYPERCORN_SETTINGS.items():
        setattr(config, name, value)
    config.application_path = APP_TARGET
    config.bind = [options.bind]
    config.workers = options.workers
    config.graceful_timeout = float(options.graceful_timeout)
    config.accesslog = "-" if options.access_log else None
    config.errorlog = "-"
    config.access_log_format = HYPERCORN_ACCESS_FORMAT
    config.logger_class = QuickAccessLogger  # the same line, without hypercorn's per-line dict
    return run(config)


SERVERS: dict[str, Callable[[ServeOptions], int]] = {
    "granian": run_granian,
    "hypercorn": run_hypercorn,
}
DEFAULT_SERVER = "granian"


def serve(options: ServeOptions) -> int:
    """Run the chosen server until it stops; returns the exit status."""
    return SERVERS[options.server](options)


def graceful_seconds(value: str) -> int:
    """A graceful timeout given in seconds, at least one (granian counts whole seconds)."""
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 1:
        raise ValueError("must be at least 1 second")
    return math.ceil(seconds)
