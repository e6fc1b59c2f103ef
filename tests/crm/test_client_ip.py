"""The client's address: read from X-Forwarded-For only when the connection comes from a
trusted proxy (KEEPERS_TRUSTED_PROXIES), else the connection's own address."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from crm.client_ip import client_ip
from crm.extend import client_ip as published

PROXY = "10.0.0.2"


def request(remote: str = PROXY, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_the_connection_is_the_client(settings):
    settings.KEEPERS_TRUSTED_PROXIES = []
    assert client_ip(request("198.51.100.7")) == "198.51.100.7"
    # a header anyone can send is not believed
    assert client_ip(request("198.51.100.7", "203.0.113.9")) == "198.51.100.7"
    assert published is client_ip  # what the other apps (and django-axes) are pointed at


@pytest.mark.parametrize(
    "remote, forwarded, expected",
    [
        # the proxy appends the address it was connected from
        (PROXY, "203.0.113.9", "203.0.113.9"),
        # a client that sends its own X-Forwarded-For cannot choose its address: the proxy
        # appends the real one, and the rightmost address not of a trusted proxy wins
        (PROXY, "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        (PROXY, "1.2.3.4,203.0.113.9", "203.0.113.9"),
        # two trusted proxies in a row (a CDN's edge, then ours)
        (PROXY, "203.0.113.9, 10.9.8.7", "203.0.113.9"),
        (PROXY, "203.0.113.9, 192.0.2.44", "203.0.113.9"),
        # ports and IPv6, as proxies write them
        (PROXY, "203.0.113.9:51515", "203.0.113.9"),
        (PROXY, "[2001:db8::1]:4711", "2001:db8::1"),
        (PROXY, "2001:DB8::1", "2001:db8::1"),
        # the connection written as an IPv4-mapped IPv6 address is still the proxy
        ("::ffff:10.0.0.2", "203.0.113.9", "203.0.113.9"),
        # a request the proxy itself makes (a health check) has no header: it is the client
        (PROXY, None, PROXY),
        (PROXY, "", PROXY),
        # every hop trusted: the leftmost is as far as we can see
        (PROXY, "10.1.1.1, 10.2.2.2", "10.1.1.1"),
        # what the proxy appended is not an address: unknown, never the proxy's
        (PROXY, "203.0.113.9, unknown", None),
        (PROXY, "not an address", None),
        # not from a trusted proxy: the header is ignored
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),
        ("10.1.0.5", "203.0.113.9", "10.1.0.5"),
        ("", None, None),
    ],
)
def test_behind_trusted_proxies(settings, remote, forwarded, expected):
    settings.KEEPERS_TRUSTED_PROXIES = ["10.0.0.0/24", "10.9.0.0/16", "192.0.2.44", "10.2.2.2"]
    settings.KEEPERS_TRUSTED_PROXIES += ["10.1.1.1"]
    assert client_ip(request(remote, forwarded)) == expected


def test_a_proxy_missing_from_the_setting_is_reported_once(settings, caplog, monkeypatch):
    monkeypatch.setattr("crm.client_ip._warned", set())  # once per process: start afresh
    settings.KEEPERS_TRUSTED_PROXIES = []
    for _ in range(3):
        assert client_ip(request("10.77.0.1", "203.0.113.9")) == "10.77.0.1"
    warnings = [r for r in caplog.records if "KEEPERS_TRUSTED_PROXIES" in r.getMessage()]
    assert len(warnings) == 1 and "10.77.0.1" in warnings[0].getMessage()
    client_ip(request("1.2.3.4", "203.0.113.9"))  # a public address: a client's forgery
    assert len([r for r in caplog.records if "KEEPERS_TRUSTED_PROXIES" in r.getMessage()]) == 1


def test_a_header_longer_than_any_real_chain_is_not_walked_past_its_tail(settings):
    settings.KEEPERS_TRUSTED_PROXIES = [PROXY]
    forged = ", ".join(f"10.0.0.{i % 250}" for i in range(5000))
    assert client_ip(request(PROXY, f"{forged}, 203.0.113.9")) == "203.0.113.9"


def test_a_bad_entry_in_the_setting_refuses_to_start(monkeypatch):
    from config.settings.env import env_networks

    monkeypatch.setenv("KEEPERS_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1, ::1")
    assert env_networks("KEEPERS_TRUSTED_PROXIES") == ["10.0.0.0/8", "127.0.0.1", "::1"]
    monkeypatch.setenv("KEEPERS_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ImproperlyConfigured, match=r"proxy\.internal"):
        env_networks("KEEPERS_TRUSTED_PROXIES")


def test_no_other_module_reads_the_address_itself():
    """One door: everything that records or limits by IP asks crm.client_ip."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readers = [
        str(path.relative_to(root))
        for app in ("config", "crm", "campaigns", "loyalty")
        for path in (root / app).rglob("*.py")
        if path.name != "client_ip.py"
        and any(name in path.read_text() for name in ("REMOTE_ADDR", "X_FORWARDED_FOR"))
    ]
    assert readers == []
