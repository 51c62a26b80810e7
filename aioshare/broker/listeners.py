"""Kafka's `listeners` and `listener.security.protocol.map`, parsed and validated like Kafka.

`parse_listeners` follows SocketServerConfigs.listenerListToEndPoints and
AbstractKafkaConfig.listenerListToEndPoints (4.4): the same URI pattern, listener-name
normalisation (upper case), duplicate-name and duplicate-port rules, and the same messages,
raised as InvalidBrokerConfig naming the config key.

`CURRENT_LISTENER` holds the name of the listener a request arrived on while its handler runs
(the server sets it in each connection's task), so that a Node reports the host and port of
that listener, as Kafka answers Metadata and FindCoordinator with the endpoints of the
request's listener.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import ipaddress
import re
from collections.abc import Sequence

__all__ = [
    "CURRENT_LISTENER",
    "DEFAULT_PROTOCOL_MAP",
    "ListenerSpec",
    "SecurityProtocol",
    "parse_listeners",
    "parse_protocol_map",
]


class SecurityProtocol(enum.StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


# SocketServerConfigs.LISTENER_SECURITY_PROTOCOL_MAP_DEFAULT: every protocol under its own name.
DEFAULT_PROTOCOL_MAP = ",".join(f"{p.value}:{p.value}" for p in SecurityProtocol)

# SocketServerConfigs.URI_PARSE_REGEXP (used with Matcher.matches, hence fullmatch).
_URI = re.compile(r"(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)")

CURRENT_LISTENER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aioshare_broker_listener", default=None
)


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One entry of `listeners`: name (normalised), protocol, host ("" = the broker's host), port."""

    name: str
    protocol: SecurityProtocol
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


def _error(key: str, message: str) -> Exception:
    from aioshare.broker.config import InvalidBrokerConfig

    return InvalidBrokerConfig(key, message)


def parse_protocol_map(text: str, key: str = "listener.security.protocol.map") -> dict[str, SecurityProtocol]:
    """Csv.parseCsvMap, then SecurityProtocol.forName for each value (Kafka's messages)."""
    result: dict[str, SecurityProtocol] = {}
    if not text:
        return result
    for item in re.split(r"\s*,\s*", text):
        cut = item.rfind(":")
        if cut < 0:
            # Java's substring(0, -1) throws StringIndexOutOfBoundsException here.
            raise _error(
                key,
                f"Error parsing configuration property '{key}': "
                f"begin 0, end -1, length {len(item)} (entry {item!r} has no ':')",
            )
        name, protocol = item[:cut].strip().upper(), item[cut + 1 :].strip()
        try:
            result[name] = SecurityProtocol(protocol.upper())
        except ValueError:
            raise _error(key, f"Invalid security protocol `{protocol}` defined in {key}") from None
    return result


def parse_listeners(
    listeners: Sequence[str], protocol_map: dict[str, SecurityProtocol], key: str = "listeners"
) -> list[ListenerSpec]:
    """Kafka's listenerListToEndPoints with distinct ports required (port 0 may repeat)."""
    shown = "[" + ", ".join(listeners) + "]"

    def fail(reason: str) -> Exception:
        return _error(key, f"Error creating broker listeners from '{shown}': {reason}")

    specs: list[ListenerSpec] = []
    for entry in listeners:
        match = _URI.fullmatch(entry)
        if match is None:
            raise fail(f"Unable to parse {entry} to a broker endpoint")
        name = match.group(1).upper()
        try:
            port = int(match.group(3))
        except ValueError:
            raise fail(f'For input string: "{match.group(3)}"') from None
        if not 0 <= port <= 65535:
            # Kafka fails later, at bind time; the embedded broker says so now.
            raise fail(f"port out of range: {port}")
        protocol = protocol_map.get(name)
        if protocol is None:
            raise fail(f"No security protocol defined for listener {name}")
        specs.append(ListenerSpec(name, protocol, match.group(2), port))
    if not specs:
        raise _error(key, "listeners must name at least one listener")
    if len({spec.name for spec in specs}) != len(specs):
        raise fail(f"Each listener must have a different name, listeners: {shown}")
    by_port: dict[int, list[ListenerSpec]] = {}
    for spec in specs:
        if spec.port != 0:
            by_port.setdefault(spec.port, []).append(spec)
    for port, same in by_port.items():
        if len(same) < 2:
            continue
        ip_hosts = [s.host for s in same if _ip_version(s.host)]
        if len(same) == 2 and len(ip_hosts) == 2 and {_ip_version(h) for h in ip_hosts} == {4, 6}:
            continue
        if not ip_hosts:
            raise fail(f"Each listener must have a different port, listeners: {shown}")
        raise fail(
            "Each listener must have a different port unless exactly one listener has an IPv4 "
            f"address and the other IPv6 address, listeners: {shown}, port: {port}"
        )
    return specs


def _ip_version(host: str) -> int:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 0
