"""Configuration mistakes are ConfigError naming the one wrong field, found up front."""

from __future__ import annotations

from typing import Any

import pytest

import aioshare
from aioshare.admin import ShareAdmin
from aioshare.protocol.errors import ConfigError
from aioshare.share.consumer import ShareConsumer


def consumer(**options: Any) -> ShareConsumer:
    return ShareConsumer("jobs", **{"group_id": "g", "bootstrap_servers": "127.0.0.1:9092", **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group_id": ""}, "group_id must be a non-empty string, got ''"),
        ({"fetch_max_wait": -1}, "fetch_max_wait must be a finite number of seconds >= 0, got -1"),
        ({"ack_linger": "0.1"}, "ack_linger must be a finite number of seconds >= 0, got '0.1'"),
        ({"max_poll_records": "5"}, "max_poll_records must be an int >= 1, got '5'"),
        ({"max_in_flight": 0}, "max_in_flight must be an int >= 1 (or None), got 0"),
        ({"fetch_max_bytes": 0}, "fetch_max_bytes must be an int >= 1, got 0"),
        ({"request_timeout": 0}, "request_timeout must be a finite number of seconds > 0, got 0"),
        ({"bootstrap_servers": ""}, "bootstrap_servers must be"),
    ],
)
async def test_share_consumer_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        consumer(**options)
    assert str(info.value).startswith(message)
    # One field is blamed, not two.
    assert " and " not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": "5"}, "route 'h': concurrency must be an int >= 1, got '5'"),
        ({"concurrency": 0}, "route 'h': concurrency must be an int >= 1, got 0"),
        ({"consumers": 1.5}, "route 'h': consumers must be an int >= 1, got 1.5"),
        ({"max_attempts": "3"}, "route 'h': max_attempts must be an int >= 1 (or None), got '3'"),
        ({"poll_interval": 0}, "route 'h': poll_interval must be a finite number of seconds > 0, got 0"),
        ({"group_id": ""}, "route 'h': group_id must be a non-empty string, got ''"),
    ],
)
def test_handler_options(options: dict[str, Any], message: str) -> None:
    app = aioshare.App("127.0.0.1:9092")
    kwargs: dict[str, Any] = {"group_id": "g", "name": "h", **options}
    with pytest.raises(ConfigError) as info:

        @app.handler("jobs", **kwargs)
        async def h(msg: aioshare.Message[bytes]) -> None: ...

    assert str(info.value) == message


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("",), {}, "bootstrap_servers must be"),
        ((" , ",), {}, "bootstrap_servers must be"),
        ((), {"max_concurrency": "4"}, "max_concurrency must be an int >= 1 (or None), got '4'"),
        ((), {"max_delayed": -1}, "max_delayed must be an int >= 0, got -1"),
        ((), {"close_timeout": 0}, "close_timeout must be a finite number of seconds > 0, got 0"),
        ((), {"shutdown_timeout": float("nan")}, "shutdown_timeout must be a finite number of seconds >= 0"),
    ],
)
def test_app_options(args: tuple[Any, ...], options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        aioshare.App(*args, **options)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("",), {}, "bootstrap_servers must be"),
        (("127.0.0.1:9092",), {"request_timeout": -1}, "request_timeout must be a finite number"),
        (("127.0.0.1:9092",), {"retry_backoff": "x"}, "retry_backoff must be a finite number"),
    ],
)
async def test_share_admin_options(args: tuple[Any, ...], options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ShareAdmin(*args, **options)
    assert str(info.value).startswith(message)
