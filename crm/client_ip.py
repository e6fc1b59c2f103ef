"""The client's address, the one way every app reads it: rate limits, consent records,
opt-in requests, referral visits (and django-axes: AXES_CLIENT_IP_CALLABLE =
"crm.client_ip.client_ip").

Behind the TLS proxy every connection comes from the proxy, and the client's address is
in X-Forwarded-For, which the proxy appends to. Anyone can send that header, so it is
read only when the connection comes from a proxy named in KEEPERS_TRUSTED_PROXIES, and
from its right end: the rightmost address that is not a trusted proxy is the client
(what a client wrote itself stands to the left of what the proxy appended). With no
trusted proxies, the connection's own address is the client's.

django-ipware was weighed for this and not used: its trusted-proxy list is matched by
position against the header's entries alone, never against the connection's address, so
a client that reaches the application directly chooses its own address, and the usual
one-proxy chain (the proxy appends its peer, not itself) does not contain the proxy."""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# More hops than any real chain of proxies; a longer header is read from its tail only.
MAX_HOPS = 20

log = logging.getLogger(__name__)
_warned: set[str] = set()


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address as text, or None when it cannot be known (no connection
    address, or what a trusted proxy appended is not an address)."""
    peer = _address(request.META.get("REMOTE_ADDR") or "")
    if peer is None:
        return None
    trusted = _networks(tuple(settings.KEEPERS_TRUSTED_PROXIES))
    header = request.META.get("HTTP_X_FORWARDED_FOR") or ""
    if not _is_trusted(peer, trusted):
        if header and (peer.is_private or peer.is_loopback):
            _warn_untrusted_proxy(str(peer))
        return str(peer)
    hops = [hop for hop in header.rsplit(",", MAX_HOPS)[-MAX_HOPS:] if hop.strip()]
    nearest = peer  # a request the proxy makes itself (a health check) has no header
    for raw in reversed(hops):
        address = _address(raw)
        if address is None:
            return None
        if not _is_trusted(address, trusted):
            return str(address)
        nearest = address
    return str(nearest)  # every hop is a trusted proxy: the farthest one seen


def _warn_untrusted_proxy(peer: str) -> None:
    """A private address forwarding for someone is most likely our own proxy, missing
    from the setting: every customer would then share its address (limits, consent
    records). Said once per address and process."""
    if peer in _warned:
        return
    _warned.add(peer)
    log.warning(
        "X-Forwarded-For from %s, which is not in KEEPERS_TRUSTED_PROXIES: its header is "
        "ignored and the client's address taken as %s. If that is your TLS proxy, add it "
        "(docs/operations.md, Client addresses behind the proxy).",
        peer,
        peer,
    )


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(_unmapped(ipaddress.ip_network(entry, strict=False)) for entry in entries)


def _is_trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _address(raw: str) -> Address | None:
    """An address as proxies write them: bare, `1.2.3.4:port`, `[2001:db8::1]:port`;
    an IPv4-mapped IPv6 address is its IPv4 address."""
    text = raw.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _unmapped(network: Network) -> Network:
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network
