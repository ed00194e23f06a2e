"""A load tool must not hit production by accident: only literal loopback targets are allowed
without ``--allow-remote``. Decided on the text alone — no name is ever resolved for it."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from loadtests.errors import LoadOptionError


class RemoteTargetRefused(LoadOptionError):
    """The target is not a literal loopback address; the message says how to allow it."""


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (any spelling, bracketed or not) or exactly ``localhost``."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def host_of(target: str) -> str:
    """The host of a URL (``http://h:p/...``) or a ``host:port`` / ``[v6]:port`` address."""
    if "://" in target:
        host = urlsplit(target).hostname
        if not host:
            raise RemoteTargetRefused(f"{target!r} has no host")
        return host
    if target.startswith("["):
        return target[1 : target.index("]")] if "]" in target else target
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def check_target_allowed(target: str, *, allow_remote: bool, option: str) -> None:
    """``RemoteTargetRefused`` unless ``target`` is loopback or ``allow_remote`` is set."""
    host = host_of(target)
    if not allow_remote and not is_loopback_host(host):
        raise RemoteTargetRefused(
            f"{option} {target!r}: {host!r} is not a loopback address (127.0.0.0/8, ::1, "
            "localhost); servelab refuses remote targets unless --allow-remote is given"
        )
