"""Hypothesis strategies for the generated messages, built from Kafka's JSON schemas at test time.

This is a small schema reader of its own, written independently of tools/generate_protocol.py,
so that a misreading of the schemas in the generator (a wrong version range, a lost
nullableVersions, a tag in the wrong place) is not silently shared by the tests.

For a message class and a version it draws values for exactly the fields that version carries
(others stay at their defaults), None only where the version allows null, integers over the
whole range of their wire type, and nested structs recursively.

Two keyword-only options serve checks against stricter readers (Kafka's Java classes):
`populated=True` draws every array non-empty, nothing null, and every tagged field different
from its default (so it is really written); `records=` replaces the arbitrary bytes drawn for
`records` fields (e.g. with valid record batches).
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from aioshare.testing.kafka.maven import kafka_classpath
from aioshare.testing.kafka.requirement import require

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(os.environ.get("AIOSHARE_KAFKA_SCHEMAS", str(ROOT.parent / "shared" / "kafka-protocol")))
# The jar the generator reads the schemas SCHEMA_DIR lacks from (Makefile: CLIENTS_JAR), and the
# messages it takes from there (tools/generate_protocol.py's JAR_MESSAGES, listed again here so the
# tests check the generator's list rather than share it).
CLIENTS_JAR_VERSION = "4.4.0"
JAR_SCHEMA_NAMES = (
    "AlterUserScramCredentialsRequest",
    "AlterUserScramCredentialsResponse",
    "DescribeUserScramCredentialsRequest",
    "DescribeUserScramCredentialsResponse",
)

INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
PRIMITIVES = {*INT_RANGES, "float64", "bool", "string", "bytes", "records", "uuid"}


@dataclass(frozen=True)
class VersionRange:
    """An inclusive version range; `VersionRange.NONE` holds no version."""

    low: int
    high: int

    @staticmethod
    def parse(text: str | None) -> VersionRange:
        if text is None or text.strip() in ("", "none"):
            return VersionRange(1, 0)
        text = text.strip()
        if text.endswith("+"):
            return VersionRange(int(text[:-1]), 2**15 - 1)
        if "-" in text:
            low, high = text.split("-")
            return VersionRange(int(low), int(high))
        return VersionRange(int(text), int(text))

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.low <= version <= self.high

    def versions(self) -> range:
        return range(self.low, self.high + 1)


@dataclass
class SchemaField:
    name: str
    type: str
    versions: VersionRange
    nullable: VersionRange
    tagged: VersionRange
    tag: int | None
    ignorable: bool
    default: str | None
    flexible_override: VersionRange | None
    fields: list[SchemaField] | None = None  # set when the element type is a struct

    @property
    def attr(self) -> str:
        return snake(self.name)

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def element(self) -> str:
        return self.type[2:] if self.is_array else self.type

    @property
    def is_struct(self) -> bool:
        return self.element not in PRIMITIVES


@dataclass
class Schema:
    name: str
    kind: str
    api_key: int
    valid: VersionRange
    flexible: VersionRange
    fields: list[SchemaField]
    raw: dict[str, Any] = field(repr=False)

    def is_flexible(self, version: int) -> bool:
        return version in self.flexible


def snake(name: str) -> str:
    """The attribute name docs/protocol.md promises: the schema name in snake_case."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def _parse_fields(specs: list[dict[str, Any]], common: dict[str, list[dict[str, Any]]]) -> list[SchemaField]:
    result: list[SchemaField] = []
    for spec in specs:
        f = SchemaField(
            name=spec["name"],
            type=spec["type"],
            versions=VersionRange.parse(spec.get("versions")),
            nullable=VersionRange.parse(spec.get("nullableVersions")),
            tagged=VersionRange.parse(spec.get("taggedVersions")),
            tag=int(spec["tag"]) if "tag" in spec else None,
            ignorable=bool(spec.get("ignorable", False)),
            default=str(spec["default"]) if "default" in spec else None,
            flexible_override=VersionRange.parse(spec["flexibleVersions"])
            if "flexibleVersions" in spec
            else None,
        )
        if f.is_struct:
            inner = spec.get("fields")
            if inner is None:
                inner = common[f.element]
            f.fields = _parse_fields(inner, common)
        result.append(f)
    return result


def load_schema(path: Path) -> Schema:
    return parse_schema(path.read_text(encoding="utf-8"))


def parse_schema(text: str) -> Schema:
    raw = json.loads(_strip_comments(text))
    common = {c["name"]: c["fields"] for c in raw.get("commonStructs", [])}
    return Schema(
        name=raw["name"],
        kind=raw["type"],
        api_key=int(raw.get("apiKey", -1)),
        valid=VersionRange.parse(raw["validVersions"]),
        flexible=VersionRange.parse(raw["flexibleVersions"]),
        fields=_parse_fields(raw["fields"], common),
        raw=raw,
    )


_CACHE: dict[str, Schema | None] = {}


def schema_for(name: str) -> Schema | None:
    """The schema of message `name`, or None when the schema directory is not checked out.

    A message the directory lacks is read from kafka-clients' jar, as tools/generate_protocol.py
    reads it (its JAR_MESSAGES); without Kafka's jars the test skips (fails under CI)."""
    if name not in _CACHE:
        path = SCHEMA_DIR / f"{name}.json"
        if path.is_file():
            _CACHE[name] = load_schema(path)
        elif SCHEMA_DIR.is_dir():
            _CACHE[name] = _schema_from_clients_jar(name)
        else:
            _CACHE[name] = None
    return _CACHE[name]


def _schema_from_clients_jar(name: str) -> Schema | None:
    lib = require(lambda: kafka_classpath(CLIENTS_JAR_VERSION))
    with zipfile.ZipFile(lib / f"kafka-clients-{CLIENTS_JAR_VERSION}.jar") as jar:
        try:
            text = jar.read(f"common/message/{name}.json").decode("utf-8")
        except KeyError:
            return None
    return parse_schema(text)


def schema_names() -> list[str]:
    """Every message the codec is generated from: SCHEMA_DIR's and the jar's."""
    if not SCHEMA_DIR.is_dir():
        return []
    return sorted({p.stem for p in SCHEMA_DIR.glob("*.json")} | set(JAR_SCHEMA_NAMES))


# --------------------------------------------------------------------------- strategies

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
# Long enough now and then for a two-byte compact length varint (>= 127 bytes).
_LONG_TEXT = st.text(alphabet=st.characters(codec="ascii"), min_size=127, max_size=140)
_BYTES = st.binary(max_size=8) | st.binary(min_size=127, max_size=130)


def _uuids() -> st.SearchStrategy[uuid.UUID]:
    return st.one_of(
        st.just(uuid.UUID(int=0)),
        st.builds(lambda raw: uuid.UUID(bytes=raw), st.binary(min_size=16, max_size=16)),
    )


def primitive_strategy(kind: str) -> st.SearchStrategy[Any]:
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.integers(low, high)
    if kind == "bool":
        return st.booleans()
    if kind == "float64":
        return st.floats(allow_nan=False)
    if kind == "string":
        return st.one_of(_TEXT, _TEXT, _TEXT, _LONG_TEXT)
    if kind in ("bytes", "records"):
        return _BYTES
    if kind == "uuid":
        return _uuids()
    raise ValueError(f"no strategy for {kind}")


def schema_default(owner: type, f: SchemaField) -> Any:
    """The value field `f` has when its schema "default" is all a reader gets (as the schema says it)."""
    if f.default == "null":
        return None
    if f.is_array:
        return []
    if f.is_struct:
        return getattr(owner, f.element)()
    if f.element in INT_RANGES:
        return int(f.default, 0) if f.default else 0
    if f.element == "bool":
        return f.default == "true"
    if f.element == "string":
        return f.default or ""
    if f.element == "uuid":
        return uuid.UUID(int=0)
    if f.element in ("bytes", "records"):
        return b""
    raise ValueError(f"no default for {f.name}: {f.type}")


def _differs_from(default: Any) -> Callable[[Any], bool]:
    return lambda value: bool(value != default)


def field_strategy(
    owner: type,
    f: SchemaField,
    version: int,
    max_list: int,
    *,
    populated: bool = False,
    records: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[Any]:
    element: st.SearchStrategy[Any]
    if f.is_struct:
        assert f.fields is not None
        element = struct_strategy(
            owner,
            getattr(owner, f.element),
            f.fields,
            version,
            max_list,
            populated=populated,
            records=records,
        )
    elif f.element == "records" and records is not None:
        element = records
    else:
        element = primitive_strategy(f.element)
    min_size = min(1, max_list) if populated else 0
    value = st.lists(element, min_size=min_size, max_size=max_list) if f.is_array else element
    if version in f.nullable and not populated:
        value = st.none() | value
    return value


def struct_strategy(
    owner: type,
    cls: type,
    fields: list[SchemaField],
    version: int,
    max_list: int,
    *,
    populated: bool = False,
    records: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[Any]:
    """Instances of `cls` (a message or one of its nested structs) for `version`."""
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for f in fields:
        if version not in f.versions:
            continue
        value = field_strategy(owner, f, version, max_list, populated=populated, records=records)
        if populated and f.tag is not None and version in f.tagged:
            # A tagged field equal to its default is left off the wire: keep it off the default.
            value = value.filter(_differs_from(schema_default(owner, f)))
        kwargs[f.attr] = value
    return st.builds(cls, **kwargs)


def message_strategy(
    cls: type,
    version: int,
    max_list: int = 2,
    *,
    populated: bool = False,
    records: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[Any]:
    schema = schema_for(cls.__name__)
    if schema is None:
        raise LookupError(f"no schema for {cls.__name__} in {SCHEMA_DIR}")
    return struct_strategy(cls, cls, schema.fields, version, max_list, populated=populated, records=records)
