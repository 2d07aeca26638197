"""ALLOWED_HOSTS: the host names the operator named, and whether a request's host is one of them.

Plain strings in, no HTTP. An entry is `name` or `name:port`; a port is part of the host (an
entry without one matches only the scheme's default port, which clients and werkzeug leave out),
because the host a request was admitted under can become the base of a link in a mail. A leading
dot (`.example.com`) also admits every subdomain.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
MAX_NAME = 253


@dataclass(frozen=True)
class HostPattern:
    """One ALLOWED_HOSTS entry, normalised: lower-case name, port ("" for the default one)."""

    name: str
    port: str = ""
    subdomains: bool = False

    def matches(self, name: str, port: str) -> bool:
        """Whether a (lower-case) name and port are this entry's."""
        if port != self.port:
            return False
        return name == self.name or (self.subdomains and name.endswith(f".{self.name}"))


def split_host(host: str) -> tuple[str, str]:
    """`name:port` -> (name, port); port "" when absent. IPv6 literals keep their brackets."""
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:  # no port, or the last colon was inside an IPv6 literal
        return host, ""
    return name, port


def parse_pattern(entry: str) -> HostPattern:
    """One entry of ALLOWED_HOSTS; ValueError says what is wrong with it."""
    text = entry.strip().lower()
    if "/" in text:
        raise ValueError(f"{entry.strip()!r} is a URL; give the host name (and :port) only")
    if text.startswith("*"):
        raise ValueError(f"{entry.strip()!r}: write .example.com for a domain and its subdomains")
    if not text.isascii():
        raise ValueError(f"{entry.strip()!r}: give the name in its IDNA form (xn--...)")
    subdomains = text.startswith(".")
    name, port = split_host(text.removeprefix("."))
    if text.endswith(":") or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
        raise ValueError(f"{entry.strip()!r}: the port must be a number from 1 to 65535")
    if not _valid_name(name, subdomains):
        raise ValueError(f"{entry.strip()!r} is not a host name or IP address")
    return HostPattern(name, str(int(port)) if port else "", subdomains)


def _valid_name(name: str, subdomains: bool) -> bool:
    if name.startswith("[") and name.endswith("]"):
        return not subdomains and is_ip(name[1:-1], version=6)
    if is_ip(name, version=4):
        return not subdomains  # an address has no subdomains
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None


def is_ip(text: str, version: int | None = None) -> bool:
    """Whether `text` is an IP address (of that version, when one is given)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def host_allowed(host: str, patterns: Iterable[HostPattern]) -> bool:
    """Whether `host` (as werkzeug reads it: `name[:port]`, default port left out) is allowed."""
    name, port = split_host(host.lower())
    return any(pattern.matches(name, port) for pattern in patterns)
