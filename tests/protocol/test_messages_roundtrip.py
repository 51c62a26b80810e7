"""Round trip of every generated message at every valid version, with schema-driven values.

For each message and version the values come from Kafka's JSON schema read at test time
(`schema_strategies`), so only the fields the version carries are set. Properties:
`decode(encode(v)) == v`, `encode(decode(b)) == b`, and decoding from inside a larger buffer
(`decode_from`) reads exactly the message's bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from aioshare.protocol import messages
from aioshare.protocol._codec import ApiMessage
from tests.protocol import schema_strategies as ss

MAX_EXAMPLES = 20

MESSAGE_CLASSES: list[type[ApiMessage]] = sorted(
    (
        obj
        for obj in vars(messages).values()
        if isinstance(obj, type) and issubclass(obj, ApiMessage) and obj is not ApiMessage
    ),
    key=lambda c: c.__name__,
)
CASES = [
    pytest.param(cls, version, id=f"{cls.__name__}-v{version}")
    for cls in MESSAGE_CLASSES
    for version in range(cls.MIN_VERSION, cls.MAX_VERSION + 1)
]

needs_schemas = pytest.mark.skipif(not ss.SCHEMA_DIR.is_dir(), reason=f"{ss.SCHEMA_DIR} not checked out")


def check_roundtrip(cls: type[ApiMessage], version: int, value: Any) -> None:
    data = value.encode(version)
    assert isinstance(data, bytes)
    decoded = cls.decode(data, version)
    assert decoded == value
    assert decoded.encode(version) == data
    # Inside a larger buffer, decode_from consumes exactly this message.
    padded = memoryview(b"\xa5" * 3 + data + b"\x5a" * 2)
    again, end = cls.decode_from(padded, 3, version)
    assert end == 3 + len(data)
    assert again == value


@needs_schemas
@pytest.mark.parametrize(("cls", "version"), CASES)
def test_roundtrip(cls: type[ApiMessage], version: int) -> None:
    schema = ss.schema_for(cls.__name__)
    if schema is None:
        pytest.skip(f"no schema for {cls.__name__}")

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ss.message_strategy(cls, version))
    def run(value: Any) -> None:
        check_roundtrip(cls, version, value)

    run()


@needs_schemas
@pytest.mark.parametrize(("cls", "version"), CASES)
def test_default_instance_roundtrip(cls: type[ApiMessage], version: int) -> None:
    value = cls()
    check_roundtrip(cls, version, value)


@needs_schemas
def test_every_schema_has_a_class_with_its_versions() -> None:
    names = ss.schema_names()
    assert len(names) >= 70
    by_name = {c.__name__: c for c in MESSAGE_CLASSES}
    assert sorted(by_name) == names
    for name in names:
        schema = ss.schema_for(name)
        assert schema is not None
        cls = by_name[name]
        assert (cls.MIN_VERSION, cls.MAX_VERSION) == (schema.valid.low, schema.valid.high), name
        assert cls.API_KEY == schema.api_key, name
        for version in schema.valid.versions():
            assert cls.is_flexible(version) == schema.is_flexible(version), (name, version)


def test_registries_hold_every_request_and_response() -> None:
    for key, cls in messages.REQUESTS.items():
        assert cls.API_KEY == key
        assert cls.__name__.endswith("Request")
        assert messages.RESPONSES[key].__name__ == cls.__name__.removesuffix("Request") + "Response"
    assert set(messages.REQUESTS) == set(messages.RESPONSES)
    assert len(messages.REQUESTS) >= 30
