"""Which hosts simlabel may connect to on a user's behalf: public addresses only, unless a setting opens others.

Webhooks (labeling.services.webhooks) and bucket endpoints (core.object_storage) both send requests to a
host a user typed. Without a check that would let a dataset admin make the server probe what only it can
reach (SSRF): its own loopback services, the private network it runs in, a cloud's metadata service at
169.254.169.254. A host is resolved and every address it resolves to must be public (not loopback,
private, link-local, multicast, reserved or unspecified, IPv4 or IPv6, including IPv4 addresses wrapped
in IPv6) unless it lies in one of the networks the caller's setting allows.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 gateways turn 64:ff9b::a.b.c.d into the IPv4 address a.b.c.d, which is checked instead.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The host is not one simlabel may connect to."""


def networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    """The networks of a setting's CIDRs ("127.0.0.1/32", "10.1.0.0/16", "fd00::/8")."""
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why simlabel may not connect to `ip` (a kind of address, e.g. "loopback"), or None when it may."""
    embedded = _embedded_ipv4(ip)
    if embedded is None:
        candidates = [ip]
    elif ip.ipv4_mapped is not None or ip in _NAT64:
        candidates = [embedded]  # these reach exactly the IPv4 address; their IPv6 range is special-use itself
    else:
        candidates = [embedded, ip]
    allowed = list(allowed)
    if any(c in net for c in candidates for net in allowed if net.version == c.version):
        return None
    for candidate in candidates:
        for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
            if getattr(candidate, f"is_{kind}"):
                return kind.replace("_", "-")
        if not candidate.is_global:  # e.g. 100.64.0.0/10, shared address space
            return "non-public"
    return None


def resolve_allowed(host: str, port: int, *, allowed: Iterable[str], rule: str, setting: str) -> list[str]:
    """The addresses `host` resolves to, all of them allowed; TargetRefused otherwise.

    Every address must be allowed, not just one: the connection could go to any of them. `allowed` are
    the CIDRs of `setting`; `rule` says what may connect where, e.g. "webhooks may only reach public
    addresses", and goes into the refusal with the setting's name.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"The host {host} could not be resolved ({exc}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise TargetRefused(f"The host {host} has no address.")
    allowed_networks = networks(allowed)
    for address in addresses:
        # getaddrinfo can answer "fe80::1%eth0" for a scoped address.
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        kind = address_refusal(ip, allowed_networks)
        if kind is not None:
            raise TargetRefused(
                f"The host {host} resolves to {ip}, a {kind} address; {rule} ({setting} can allow others)."
            )
    return addresses
