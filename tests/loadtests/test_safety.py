"""Only literal loopback targets without --allow-remote; no name is resolved to decide."""

from __future__ import annotations

import socket

import pytest

from loadtests.jobs.safety import RemoteTargetRefused, check_target_allowed, is_loopback_host

LOOPBACK = ["127.0.0.1", "127.255.255.254", "127.0.0.2", "::1", "[::1]", "0:0:0:0:0:0:0:1",
            "::ffff:127.0.0.1", "localhost", "LocalHost"]  # fmt: skip
NOT_LOOPBACK = ["10.0.0.1", "192.168.1.1", "172.16.0.1", "8.8.8.8", "0.0.0.0", "::", "fe80::1",
                "2001:db8::1", "example.com", "localhost.example.com", "mylocalhost",
                "localhost.", "127.0.0.1.nip.io", "", "::ffff:10.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_are_allowed(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_no_name_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a name was resolved")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    for host in LOOPBACK + NOT_LOOPBACK:
        is_loopback_host(host)


@pytest.mark.parametrize(
    "target",
    ["http://example.com/v1", "http://10.1.2.3:8000", "grpc.example.com:50051", "[2001:db8::1]:5"],
)
def test_remote_targets_are_refused_unless_allowed(target: str) -> None:
    with pytest.raises(RemoteTargetRefused, match="--allow-remote"):
        check_target_allowed(target, allow_remote=False, option="--url")
    check_target_allowed(target, allow_remote=True, option="--url")


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:8000", "http://localhost:1/x", "http://[::1]:80", "127.0.0.1:50051"],
)
def test_loopback_targets_pass(target: str) -> None:
    check_target_allowed(target, allow_remote=False, option="--url")
