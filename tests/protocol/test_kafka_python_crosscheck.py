"""Cross-check of our generated codec against kafka-python's independent JSON-driven codec.

For every message both sides implement (intersecting kafka-python's bundled schema copy with
ours), and every version both support on which the two schema copies agree on the field layout
(kafka-python's copy may be older), random values are

* encoded by us, decoded by kafka-python, and compared field by field, and
* encoded by kafka-python, decoded by us, and compared; the bytes must also be identical.

Request/response headers and whole frames (size + header + body) are compared the same way.
`test_compared_set_is_substantial` prints which messages/versions were compared and which were
skipped (and why), and fails if the compared set shrinks below 25 APIs, so this check cannot
silently vanish.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioshare.protocol import framing, messages
from aioshare.protocol._codec import ApiMessage
from tests.protocol import schema_strategies as ss

# kafka-python reads its bundled schemas with importlib.resources.read_text, deprecated since 3.11.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    kafka_protocol = pytest.importorskip("kafka.protocol")
    from kafka.protocol import api_header as k_header
    from kafka.protocol import api_message as k_api
    from kafka.protocol import schemas as k_schemas

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not ss.SCHEMA_DIR.is_dir(), reason=f"{ss.SCHEMA_DIR} not checked out"),
]

K_RESOURCES = Path(k_schemas.__file__).parent / "resources"
NIL = uuid.UUID(int=0)
MAX_EXAMPLES = 10


# --------------------------------------------------------------------------- discovery


def _kafka_python_classes() -> dict[str, Any]:
    """kafka-python's primary (unversioned) ApiMessage classes, by schema name."""
    for info in pkgutil.walk_packages(kafka_protocol.__path__, "kafka.protocol."):
        if any(part in info.name for part in (".old", ".schemas", "generate_stubs")):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module(info.name)
    found: dict[str, Any] = {}
    pending = list(k_api.ApiMessage.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__dict__.get("_json") is not None and cls.__dict__.get("_class_version", None) is None:
            found[cls._json["name"]] = cls
    return found


def layout(fields: list[ss.SchemaField], version: int, flexible: bool) -> tuple[Any, ...]:
    """Everything about a version's fields that affects the bytes on the wire."""
    out: list[Any] = []
    for f in fields:
        if version not in f.versions:
            continue
        tagged = flexible and f.tag is not None and version in f.tagged
        compact = version in f.flexible_override if f.flexible_override is not None else flexible
        kind = ("[]" if f.is_array else "") + ("struct" if f.is_struct else f.element)
        nested = layout(f.fields, version, flexible) if f.fields is not None else None
        out.append(
            (
                f.name,
                kind,
                version in f.nullable,
                f.tag if tagged else None,
                f.default if tagged else None,
                compact,
                nested,
            )
        )
    return tuple(out)


@dataclass
class Pair:
    name: str
    ours: type[ApiMessage]
    theirs: Any  # kafka-python's message class
    our_schema: ss.Schema
    their_schema: ss.Schema
    compared: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def _pairs() -> dict[str, Pair]:
    if not ss.SCHEMA_DIR.is_dir():
        return {}
    theirs = _kafka_python_classes()
    pairs: dict[str, Pair] = {}
    for name in sorted(set(theirs) & set(ss.schema_names())):
        our_schema = ss.schema_for(name)
        path = K_RESOURCES / f"{name}.json"
        if our_schema is None or not path.is_file():
            continue
        # Their raw file, before kafka-python's json_patch tweaks (types/names it renames).
        their_schema = ss.load_schema(path)
        pair = Pair(name, getattr(messages, name), theirs[name], our_schema, their_schema)
        k_valid = k_schemas.BaseField.parse_versions(theirs[name]._json["validVersions"])
        for version in our_schema.valid.versions():
            if not (k_valid[0] <= version <= k_valid[1] and version in their_schema.valid):
                pair.skipped[version] = "kafka-python lacks this version"
                continue
            flexible = our_schema.is_flexible(version)
            if flexible != their_schema.is_flexible(version):
                pair.skipped[version] = "flexibleVersions differ"
            elif layout(our_schema.fields, version, flexible) != layout(
                their_schema.fields, version, flexible
            ):
                pair.skipped[version] = "field layout differs (older schema copy)"
            else:
                pair.compared.append(version)
        pairs[name] = pair
    return pairs


PAIRS = _pairs()
COMPARED = [(pair.name, version) for pair in PAIRS.values() for version in pair.compared]
CASES = [pytest.param(name, version, id=f"{name}-v{version}") for name, version in COMPARED]


# --------------------------------------------------------------------------- value conversion


def _k_fields(k_field: Any) -> tuple[Any, ...]:
    """kafka-python's runtime sub-fields of a struct or struct-array field (same order as the JSON)."""
    inner = getattr(k_field, "array_of", None)
    return tuple((inner if inner is not None else k_field)._fields)


def _match(
    our_fields: list[ss.SchemaField], their_fields: list[ss.SchemaField], k_fields: tuple[Any, ...]
) -> Any:
    index = {f.name: i for i, f in enumerate(their_fields)}
    for f in our_fields:
        i = index[f.name]
        yield f, their_fields[i], k_fields[i]


def _is_bitfield(k_field: Any) -> bool:
    return getattr(k_field, "_type_str", None) == "bitfield"


def _scalar_to_theirs(value: Any, kind: str, k_field: Any) -> Any:
    if _is_bitfield(k_field):
        bits = {b for b in range(32) if (value >> b) & 1}
        return None if bits == {31} else bits
    if kind == "uuid":
        return None if value == NIL else value
    if isinstance(value, memoryview):
        return value.tobytes()
    return value


def _scalar_from_theirs(value: Any, kind: str, k_field: Any) -> Any:
    if _is_bitfield(k_field):
        mask = sum(1 << b for b in ({31} if value is None else value))
        return mask - (1 << 32) if mask >= 1 << 31 else mask
    if kind == "uuid":
        return NIL if value is None else value
    return value


def to_theirs(
    value: Any,
    top: type,
    our_fields: list[ss.SchemaField],
    their_fields: list[ss.SchemaField],
    k_fields: tuple[Any, ...],
    version: int,
    make: Any,
) -> Any:
    kwargs: dict[str, Any] = {}
    defaults = type(value)()
    for f, tf, kf in _match([f for f in our_fields if version in f.versions], their_fields, k_fields):
        v = getattr(value, f.attr)
        if f.tag is not None and version in f.tagged and v == getattr(defaults, f.attr):
            # Left out, like Java (and us) leave a default-valued tagged field out. kafka-python
            # would write a default-valued tagged *struct* (FetchRequest.ReplicaState) because it
            # compares it with None rather than with the default struct.
            continue
        if v is None:
            kwargs[kf.name] = None
        elif f.is_struct:
            assert f.fields is not None and tf.fields is not None
            sub = _k_fields(kf)

            def conv(
                x: Any, f: ss.SchemaField = f, tf: ss.SchemaField = tf, kf: Any = kf, sub: Any = sub
            ) -> Any:
                assert f.fields is not None and tf.fields is not None
                return to_theirs(x, top, f.fields, tf.fields, sub, version, kf.data_class)

            kwargs[kf.name] = [conv(x) for x in v] if f.is_array else conv(v)
        elif f.is_array:
            kwargs[kf.name] = [_scalar_to_theirs(x, f.element, kf) for x in v]
        else:
            kwargs[kf.name] = _scalar_to_theirs(v, f.element, kf)
    return make(**kwargs)


def from_theirs(
    obj: Any,
    top: type,
    cls: type,
    our_fields: list[ss.SchemaField],
    their_fields: list[ss.SchemaField],
    k_fields: tuple[Any, ...],
    version: int,
) -> Any:
    kwargs: dict[str, Any] = {}
    for f, tf, kf in _match([f for f in our_fields if version in f.versions], their_fields, k_fields):
        v = getattr(obj, kf.name)
        if v is None and (f.is_struct or f.is_array or f.element in ("string", "bytes", "records")):
            kwargs[f.attr] = None
        elif f.is_struct:
            assert f.fields is not None and tf.fields is not None
            sub_cls = getattr(top, f.element)
            sub = _k_fields(kf)
            items = v if f.is_array else [v]
            conv = [from_theirs(x, top, sub_cls, f.fields, tf.fields, sub, version) for x in items]
            kwargs[f.attr] = conv if f.is_array else conv[0]
        elif f.is_array:
            kwargs[f.attr] = [_scalar_from_theirs(x, f.element, kf) for x in v]
        else:
            kwargs[f.attr] = _scalar_from_theirs(v, f.element, kf)
    return cls(**kwargs)


def k_decode(pair: Pair, data: bytes, version: int) -> Any:
    # Straight through kafka-python's generic decoder: its ApiVersionsResponse.decode override
    # re-reads non-zero-error answers as v0 (a client-level fallback, not the codec).
    return k_api.ApiMessage.decode.__func__(pair.theirs, data, version=version)


def k_value_of(pair: Pair, value: Any, version: int) -> Any:
    """kafka-python's object for our `value`, every field set explicitly (its defaults differ
    from the schema's in places, e.g. its json_patch makes ListOffsetsRequest.ReplicaId -1)."""
    return to_theirs(
        value,
        pair.ours,
        pair.our_schema.fields,
        pair.their_schema.fields,
        tuple(pair.theirs._struct._fields),
        version,
        lambda **kw: pair.theirs(version=version, **kw),
    )


def k_encode(pair: Pair, value: Any, version: int) -> bytes:
    return bytes(k_value_of(pair, value, version).encode(version=version))


def ours_from_theirs(pair: Pair, obj: Any, version: int) -> Any:
    return from_theirs(
        obj,
        pair.ours,
        pair.ours,
        pair.our_schema.fields,
        pair.their_schema.fields,
        tuple(pair.theirs._struct._fields),
        version,
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("name", "version"), CASES)
def test_crosscheck(name: str, version: int) -> None:
    pair = PAIRS[name]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ss.message_strategy(pair.ours, version))
    def run(value: Any) -> None:
        ours = value.encode(version)
        # ours -> kafka-python
        decoded = k_decode(pair, ours, version)
        assert ours_from_theirs(pair, decoded, version) == value
        # kafka-python -> ours, and the same bytes
        theirs = k_encode(pair, value, version)
        assert pair.ours.decode(theirs, version) == value
        assert theirs == ours

    run()


@pytest.mark.parametrize(("name", "version"), CASES)
def test_crosscheck_frames(name: str, version: int) -> None:
    """Whole frames: size prefix, header of the right version, body."""
    pair = PAIRS[name]
    value = pair.ours()
    k_value = k_value_of(pair, value, version)
    if name.endswith("Request"):
        ours = framing.encode_request(value, version, correlation_id=4242, client_id="cross-check")
        k_value.with_header(correlation_id=4242, client_id="cross-check")
    else:
        ours = framing.encode_response(value, version, correlation_id=4242)
        k_value.with_header(correlation_id=4242)
    # version comes from the constructor: passing it to encode() again would make kafka-python
    # write request_api_version into a response header object.
    theirs = bytes(k_value.encode(header=True, framed=True))
    assert theirs == ours
    decoded = pair.theirs.decode(ours, version=version, header=True, framed=True)
    assert decoded.header.correlation_id == 4242
    if name.endswith("Request"):
        assert framing.decode_request(theirs[4:]).body == value
    else:
        assert framing.decode_response(theirs[4:], pair.ours.API_KEY, version) == value


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.integers(-(2**15), 2**15 - 1),
    st.integers(-(2**15), 2**15 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.none() | st.text(max_size=30),
    st.booleans(),
)
def test_request_header(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, flexible: bool
) -> None:
    ours = messages.RequestHeader(
        request_api_key=api_key,
        request_api_version=api_version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    version = 2 if flexible else 1
    theirs = k_header.RequestHeader(
        request_api_key=api_key,
        request_api_version=api_version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    data = ours.encode(version)
    assert bytes(theirs.encode(flexible=flexible)) == data
    decoded = k_header.RequestHeader.decode(io.BytesIO(data), flexible=flexible)
    assert (
        decoded.request_api_key,
        decoded.request_api_version,
        decoded.correlation_id,
        decoded.client_id,
    ) == (
        api_key,
        api_version,
        correlation_id,
        client_id,
    )
    assert messages.RequestHeader.decode(data, version) == ours


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(-(2**31), 2**31 - 1), st.booleans())
def test_response_header(correlation_id: int, flexible: bool) -> None:
    ours = messages.ResponseHeader(correlation_id=correlation_id)
    version = 1 if flexible else 0
    data = ours.encode(version)
    assert bytes(k_header.ResponseHeader(correlation_id=correlation_id).encode(flexible=flexible)) == data
    assert (
        k_header.ResponseHeader.decode(io.BytesIO(data), flexible=flexible).correlation_id == correlation_id
    )


def test_compared_set_is_substantial() -> None:
    lines = []
    for pair in PAIRS.values():
        skipped = ", ".join(f"v{v}: {why}" for v, why in sorted(pair.skipped.items()))
        lines.append(f"{pair.name:40} compared {pair.compared}" + (f"; skipped {skipped}" if skipped else ""))
    print("kafka-python cross-check:\n" + "\n".join(lines))
    api_keys = {PAIRS[name].ours.API_KEY for name, _ in COMPARED}
    api_keys.discard(-1)
    assert len(api_keys) >= 25, sorted(api_keys)
    assert len(COMPARED) >= 300
    # the share-group era APIs we use most must be among them
    for name in ("FetchResponse", "MetadataResponse", "ApiVersionsResponse", "FindCoordinatorRequest"):
        assert PAIRS[name].compared, name
