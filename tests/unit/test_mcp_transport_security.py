"""Which Hosts and Origins `/mcp` accepts, on every bind address."""

from __future__ import annotations

import socket
from pathlib import Path

from reynolds.entrypoints.mcp.streamable_http import transport_security
from reynolds.settings import Settings


def settings(tmp_path: Path, host: str, port: int = 8080, origins: str = "") -> Settings:
    return Settings(home=tmp_path, host=host, port=port, allowed_origins=origins)


def test_on_loopback_every_loopback_name_of_the_port_is_allowed(tmp_path: Path) -> None:
    checks = transport_security(settings(tmp_path, "127.0.0.1"))

    assert checks.enable_dns_rebinding_protection
    assert sorted(checks.allowed_hosts) == ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"]
    assert "http://127.0.0.1:8080" in checks.allowed_origins
    assert "http://localhost:8080" in checks.allowed_origins
    assert not any(h.endswith(":*") for h in checks.allowed_hosts + checks.allowed_origins)


def test_on_another_address_only_that_address_is_allowed(tmp_path: Path) -> None:
    checks = transport_security(settings(tmp_path, "10.1.2.3", 9000))

    assert checks.enable_dns_rebinding_protection
    assert checks.allowed_hosts == ["10.1.2.3:9000"]
    assert checks.allowed_origins == ["http://10.1.2.3:9000"]


def test_on_every_interface_loopback_and_this_machines_names_are_allowed(tmp_path: Path) -> None:
    hosts = transport_security(settings(tmp_path, "0.0.0.0")).allowed_hosts

    assert {"127.0.0.1:8080", "localhost:8080", f"{socket.gethostname()}:8080"} <= set(hosts)
    assert "0.0.0.0:8080" not in hosts


def test_allowed_origins_replace_the_default_when_set(tmp_path: Path) -> None:
    checks = transport_security(
        settings(tmp_path, "127.0.0.1", origins=" https://a.example/ , http://127.0.0.1:8080 ,")
    )

    assert checks.allowed_origins == ["https://a.example", "http://127.0.0.1:8080"]


def test_the_default_port_may_be_left_out_of_the_host(tmp_path: Path) -> None:
    hosts = transport_security(settings(tmp_path, "10.1.2.3", 80)).allowed_hosts

    assert hosts == ["10.1.2.3:80", "10.1.2.3"]
