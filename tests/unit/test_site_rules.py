"""Which Hosts and Origins the server accepts, on every bind address (`SiteRules`)."""

from __future__ import annotations

import socket
from pathlib import Path

from reynolds.entrypoints.http.cross_site import SiteRules, split_host
from reynolds.entrypoints.mcp.streamable_http import transport_security
from reynolds.settings import Settings


def rules(
    tmp_path: Path, host: str, port: int = 8080, origins: str = "", hosts: str = ""
) -> SiteRules:
    return SiteRules.from_settings(
        Settings(home=tmp_path, host=host, port=port, allowed_origins=origins, allowed_hosts=hosts)
    )


def test_on_loopback_every_loopback_name_of_the_port_is_allowed(tmp_path: Path) -> None:
    r = rules(tmp_path, "127.0.0.1")

    assert r.hosts == {"127.0.0.1:8080", "[::1]:8080", "localhost:8080"}
    assert r.origins == {"http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"}
    assert r.host_allowed("LOCALHOST:8080")
    assert not r.host_allowed("localhost:8081")
    assert not r.host_allowed("localhost")
    assert not r.host_allowed(None)
    assert not r.host_allowed("")


def test_on_another_address_only_that_address_is_allowed(tmp_path: Path) -> None:
    r = rules(tmp_path, "10.1.2.3", 9000)

    assert r.hosts == {"10.1.2.3:9000"}
    assert r.origins == {"http://10.1.2.3:9000"}
    assert not r.host_allowed("127.0.0.1:9000")


def test_on_every_interface_loopback_and_this_machines_names_are_allowed(tmp_path: Path) -> None:
    r = rules(tmp_path, "0.0.0.0")

    for host in ("127.0.0.1:8080", "localhost:8080", f"{socket.gethostname()}:8080"):
        assert r.host_allowed(host), host
    assert not r.host_allowed("0.0.0.0:8080")


def test_listed_hosts_add_names_on_any_port_or_on_their_own_port(tmp_path: Path) -> None:
    r = rules(tmp_path, "127.0.0.1", hosts=" reynolds, api.example:9000 ,, [fd00::1]:80")

    assert r.host_allowed("reynolds")
    assert r.host_allowed("reynolds:8080")
    assert r.host_allowed("Reynolds.:1234")
    assert r.host_allowed("api.example:9000")
    assert r.host_allowed("[FD00::1]:80")
    assert not r.host_allowed("api.example:9001")
    assert not r.host_allowed("api.example")
    assert not r.host_allowed("reynolds.evil.example")
    assert not r.host_allowed("evil.reynolds")
    assert r.host_allowed("127.0.0.1:8080")  # the server's own names stay


def test_listed_origins_are_trusted_beside_the_servers_own(tmp_path: Path) -> None:
    r = rules(tmp_path, "127.0.0.1", origins=" https://A.example/ , http://b.example:3000 ,")

    assert r.origin_allowed("https://a.example", "127.0.0.1:8080")
    assert r.origin_allowed("http://b.example:3000", "127.0.0.1:8080")
    assert r.origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert r.origin_allowed("http://localhost:8080", "127.0.0.1:8080")
    assert not r.origin_allowed("http://b.example", "127.0.0.1:8080")
    assert not r.origin_allowed("null", "127.0.0.1:8080")


def test_the_origin_of_the_host_asked_for_is_its_own(tmp_path: Path) -> None:
    r = rules(tmp_path, "0.0.0.0", hosts="reynolds")

    assert r.origin_allowed("http://reynolds:8080", "reynolds:8080")
    assert r.origin_allowed("https://reynolds", "reynolds")
    assert not r.origin_allowed("http://evil.example:8080", "reynolds:8080")
    assert not r.origin_allowed("http://reynolds:8081", "reynolds:8080")


def test_the_default_port_may_be_left_out_of_the_host(tmp_path: Path) -> None:
    r = rules(tmp_path, "10.1.2.3", 80)

    assert r.hosts == {"10.1.2.3:80", "10.1.2.3"}
    assert r.origin_allowed("http://10.1.2.3", "10.1.2.3")


def test_hosts_are_split_into_name_and_port() -> None:
    assert split_host("Example.COM:80") == ("example.com", "80")
    assert split_host("example.com.") == ("example.com", None)
    assert split_host("[::1]:8080") == ("[::1]", "8080")
    assert split_host("[::1]") == ("[::1]", None)
    assert split_host("host:port") == ("host:port", None)


def test_the_sdks_own_checks_are_off_because_every_route_is_guarded() -> None:
    assert not transport_security().enable_dns_rebinding_protection
