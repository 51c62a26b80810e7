#!/usr/bin/env python3
"""Generates aioshare/protocol/messages.py from Apache Kafka's message schema files.

    python tools/generate_protocol.py [SCHEMA_DIR] --jar KAFKA_CLIENTS_JAR [--out PATH] [--check]

The schemas are Kafka's own JSON (with // comments); they are read, never copied into the
repository. Most come from SCHEMA_DIR; the few messages SCHEMA_DIR lacks (JAR_MESSAGES) are read
from kafka-clients' jar (--jar), which carries every schema as common/message/<Name>.json.

For every message and every valid version the output has one encoder and one decoder function
per struct, with the version's decisions (flexible or not, nullable or not, which fields exist,
which are tagged) made here, at generation time. Consecutive fixed-width fields are packed and
unpacked with one precompiled struct.Struct.

--check exits 1 (printing a diff summary) when the committed module differs from what the
schemas produce, so the codec can never drift from them.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMAS = ROOT.parent / "shared" / "kafka-protocol"
DEFAULT_OUT = ROOT / "aioshare" / "protocol" / "messages.py"

# Messages not in ../shared/kafka-protocol, read from kafka-clients' jar instead (the schema files
# are generated from, never committed): the SCRAM credential admin APIs (50, 51).
JAR_MESSAGES = (
    "AlterUserScramCredentialsRequest",
    "AlterUserScramCredentialsResponse",
    "DescribeUserScramCredentialsRequest",
    "DescribeUserScramCredentialsResponse",
)
JAR_SCHEMA_PATH = "common/message/{name}.json"

NEVER = 1 << 15  # "none" as a lower version bound: no version qualifies

FIXED = {
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint16": "H",
    "float64": "d",
    "bool": "?",
    "uuid": "16s",
}
PY_PRIMITIVE = {
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "int",
    "uint16": "int",
    "float64": "float",
    "bool": "bool",
    "string": "str",
    "bytes": "bytes",
    "uuid": "uuid.UUID",
    "records": "bytes | memoryview",
}


# --------------------------------------------------------------------------- schema model


@dataclass(frozen=True)
class Versions:
    low: int
    high: int  # inclusive; NEVER-1 for "N+"

    @staticmethod
    def parse(text: str | None) -> Versions:
        if text is None or text == "none" or text == "":
            return Versions(NEVER, -1)
        if text.endswith("+"):
            return Versions(int(text[:-1]), NEVER - 1)
        if "-" in text:
            low, high = text.split("-")
            return Versions(int(low), int(high))
        return Versions(int(text), int(text))

    def __contains__(self, version: int) -> bool:
        return self.low <= version <= self.high


@dataclass
class Field:
    name: str
    type: str
    versions: Versions
    nullable: Versions
    tagged: Versions
    tag: int | None
    ignorable: bool
    default: str | None
    flexible_override: Versions | None
    struct: Struct | None = None  # set for struct and struct-array fields

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
        return self.element not in PY_PRIMITIVE

    def ever_nullable(self, message_versions: Versions) -> bool:
        return any(v in self.nullable for v in range(message_versions.low, message_versions.high + 1))


@dataclass
class Struct:
    name: str
    fields: list[Field] = field(default_factory=list)


@dataclass
class Message:
    name: str
    kind: str
    api_key: int
    valid: Versions
    flexible: Versions
    unstable_latest: bool
    top: Struct
    structs: dict[str, Struct]  # every nested struct, by name, in dependency order


def snake(name: str) -> str:
    out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return out + "_" if keyword.iskeyword(out) else out


def strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def load_message(source: str, text: str) -> Message:
    """One schema; `source` names it in errors (a file name, or the jar entry)."""
    raw = json.loads(strip_comments(text))
    structs: dict[str, Struct] = {}
    common = {c["name"]: c for c in raw.get("commonStructs", [])}
    resolving: dict[str, Struct] = {}

    def build_fields(specs: list[dict[str, object]]) -> list[Field]:
        result = []
        for spec in specs:
            f = Field(
                name=str(spec["name"]),
                type=str(spec["type"]),
                versions=Versions.parse(spec.get("versions")),  # type: ignore[arg-type]
                nullable=Versions.parse(spec.get("nullableVersions")),  # type: ignore[arg-type]
                tagged=Versions.parse(spec.get("taggedVersions")),  # type: ignore[arg-type]
                tag=int(spec["tag"]) if "tag" in spec else None,  # type: ignore[call-overload]
                ignorable=bool(spec.get("ignorable", False)),
                default=str(spec["default"]) if "default" in spec else None,
                flexible_override=Versions.parse(spec["flexibleVersions"])
                if "flexibleVersions" in spec
                else None,  # type: ignore[arg-type]
            )
            if f.is_struct:
                sname = f.element
                if "fields" in spec:
                    f.struct = build_struct(sname, spec["fields"])  # type: ignore[arg-type]
                elif sname in common:
                    f.struct = resolving.get(sname) or build_struct(sname, common[sname]["fields"])
                else:
                    raise SystemExit(f"{source}: unknown struct type {f.type} in {f.name}")
            result.append(f)
        return result

    def build_struct(name: str, specs: list[dict[str, object]]) -> Struct:
        if name in structs:
            return structs[name]
        s = Struct(name)
        resolving[name] = s
        s.fields = build_fields(specs)
        structs[name] = s  # inserted after its children: dependency order
        return s

    top = Struct(raw["name"])
    top.fields = build_fields(raw["fields"])
    for name, spec in common.items():
        build_struct(name, spec["fields"])
    return Message(
        name=raw["name"],
        kind=raw["type"],
        api_key=int(raw.get("apiKey", -1)),
        valid=Versions.parse(raw["validVersions"]),
        flexible=Versions.parse(raw["flexibleVersions"]),
        unstable_latest=bool(raw.get("latestVersionUnstable", False)),
        top=top,
        structs=structs,
    )


# --------------------------------------------------------------------------- class generation


def py_type(msg: Message, f: Field) -> str:
    if f.is_struct:
        base = f"{msg.name}.{f.element}"
    else:
        base = PY_PRIMITIVE[f.element]
    if f.is_array:
        base = f"list[{base}]"
    if f.ever_nullable(msg.valid):
        base = f"{base} | None"
    return base


def default_expr(msg: Message, f: Field) -> tuple[str, bool]:
    """Returns (expression, is_factory)."""
    d = f.default
    nullable = f.ever_nullable(msg.valid)
    if d == "null":
        if not nullable:
            raise SystemExit(f"{msg.name}.{f.name}: default null on a non-nullable field")
        return "None", False
    if f.is_array:
        return "list", True
    if f.is_struct:
        return f"lambda: {msg.name}.{f.element}()", True
    t = f.element
    if t in ("int8", "int16", "int32", "int64", "uint16"):
        return str(int(d, 0)) if d else "0", False
    if t == "float64":
        return repr(float(d)) if d else "0.0", False
    if t == "bool":
        return ("True" if d == "true" else "False") if d else "False", False
    if t == "string":
        return repr(d or ""), False
    if t == "uuid":
        return "NIL_UUID", False
    if t in ("bytes", "records"):
        return 'b""', False
    raise SystemExit(f"{msg.name}.{f.name}: no default for {t}")


def emit_class_fields(msg: Message, s: Struct, indent: str) -> list[str]:
    lines = []
    for f in s.fields:
        expr, factory = default_expr(msg, f)
        value = f"msgspec.field(default_factory={expr})" if factory else expr
        lines.append(f"{indent}{f.attr}: {py_type(msg, f)} = {value}")
    if not s.fields:
        lines.append(f"{indent}pass")
    return lines


def emit_classes(msg: Message) -> list[str]:
    lines = [f"class {msg.name}(ApiMessage, kw_only=True):"]
    lines.append(f"    API_KEY: ClassVar[int] = {msg.api_key}")
    lines.append(f"    MIN_VERSION: ClassVar[int] = {msg.valid.low}")
    lines.append(f"    MAX_VERSION: ClassVar[int] = {msg.valid.high}")
    lines.append(f"    FLEXIBLE_MIN: ClassVar[int] = {msg.flexible.low}")
    lines.append(f"    LATEST_VERSION_UNSTABLE: ClassVar[bool] = {msg.unstable_latest}")
    lines.append("")
    for s in msg.structs.values():
        lines.append(f"    class {s.name}(msgspec.Struct, kw_only=True, gc=False):")
        lines.extend(emit_class_fields(msg, s, "        "))
        lines.append("")
    lines.extend(emit_class_fields(msg, msg.top, "    "))
    lines.append("")
    lines.append("")
    # Module-level aliases: decoders construct nested structs without an attribute lookup.
    for s in msg.structs.values():
        lines.append(f"_C_{msg.name}_{s.name} = {msg.name}.{s.name}")
    return lines


# --------------------------------------------------------------------------- codec generation


class VersionView:
    """The decisions for one struct at one message version."""

    def __init__(self, msg: Message, version: int) -> None:
        self.msg = msg
        self.version = version
        self.flexible = version in msg.flexible

    def present(self, f: Field) -> bool:
        return self.version in f.versions

    def is_tagged(self, f: Field) -> bool:
        return self.flexible and f.tag is not None and self.version in f.tagged

    def compact(self, f: Field) -> bool:
        if f.flexible_override is not None:
            return self.version in f.flexible_override
        return self.flexible

    def nullable(self, f: Field) -> bool:
        return self.version in f.nullable


# Identical functions across versions are emitted once: raw name -> the name that was emitted.
CANONICAL: dict[str, str] = {}


def raw_fn_name(direction: str, msg: Message, s: Struct, version: int) -> str:
    return (
        f"_{direction}_{msg.name}_{s.name}_v{version}"
        if s is not msg.top
        else f"_{direction}_{msg.name}_v{version}"
    )


def fn_name(direction: str, msg: Message, s: Struct, version: int) -> str:
    raw = raw_fn_name(direction, msg, s, version)
    return CANONICAL.get(raw, raw)


class StructPool:
    """Precompiled struct.Struct objects, shared across the module by format."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def get(self, fmt: str) -> str:
        if fmt not in self.names:
            self.names[fmt] = f"_S_{fmt.replace('?', 'o')}"
        return self.names[fmt]

    def emit(self) -> list[str]:
        return [f'{name} = struct.Struct(">{fmt}")' for fmt, name in sorted(self.names.items())]


def is_fixed(f: Field, vv: VersionView) -> bool:
    return not f.is_array and f.element in FIXED and not vv.is_tagged(f)


def encode_value(msg: Message, f: Field, vv: VersionView, expr: str, out: str, ind: str) -> list[str]:
    """Lines writing one (non-fixed-run) value `expr` of field f into `out`."""
    v = vv.version
    nullable = vv.nullable(f)
    compact = vv.compact(f)
    lines: list[str] = []
    if f.is_array:
        a = f"a_{f.attr}"
        lines.append(f"{ind}{a} = {expr}")
        if not nullable and f.ever_nullable(msg.valid):
            lines.append(f"{ind}if {a} is None:")
            lines.append(f"{ind}    raise null_error({f.name!r})")
        if compact and not nullable:
            # Most arrays are short: one byte of length, without a function call.
            lines.append(f"{ind}if len({a}) < 127:")
            lines.append(f"{ind}    {out}.append(len({a}) + 1)")
            lines.append(f"{ind}else:")
            lines.append(f"{ind}    w_carray_len({out}, {a})")
        else:
            lines.append(f"{ind}{'w_carray_len' if compact else 'w_array_len'}({out}, {a})")
        guard = ind
        if nullable:
            lines.append(f"{ind}if {a} is not None:")
            guard = ind + "    "
        el = f.element
        if f.is_struct:
            sub = msg.structs[el]
            lines.append(f"{guard}for x_{f.attr} in {a}:")
            lines.append(f"{guard}    {fn_name('e', msg, sub, v)}(x_{f.attr}, {out})")
        elif el in FIXED and el != "uuid":
            lines.append(f'{guard}{out} += struct.pack(">%d{FIXED[el]}" % len({a}), *{a})')
        else:
            lines.append(f"{guard}for x_{f.attr} in {a}:")
            lines.extend(encode_scalar(el, False, compact, f"x_{f.attr}", out, guard + "    "))
        return lines
    if f.is_struct:
        sub = msg.structs[f.element]
        if nullable:
            lines.append(f"{ind}if {expr} is None:")
            lines.append(f"{ind}    {out}.append(0xFF)")
            lines.append(f"{ind}else:")
            lines.append(f"{ind}    {out}.append(1)")
            lines.append(f"{ind}    {fn_name('e', msg, sub, v)}({expr}, {out})")
        else:
            if f.ever_nullable(msg.valid):
                lines.append(f"{ind}if {expr} is None:")
                lines.append(f"{ind}    raise null_error({f.name!r})")
            lines.append(f"{ind}{fn_name('e', msg, sub, v)}({expr}, {out})")
        return lines
    if not nullable and f.ever_nullable(msg.valid):
        lines.append(f"{ind}if {expr} is None:")
        lines.append(f"{ind}    raise null_error({f.name!r})")
    return lines + encode_scalar(f.element, nullable, compact, expr, out, ind)


def encode_scalar(el: str, nullable: bool, compact: bool, expr: str, out: str, ind: str) -> list[str]:
    if el in FIXED:
        conv = f"{expr}.bytes" if el == "uuid" else expr
        return [f"{ind}{out} += _S_{FIXED[el].replace('?', 'o')}.pack({conv})"]
    kind = {"string": "str", "bytes": "bytes", "records": "bytes"}[el]
    name = "w_" + ("c" if compact else "") + ("n" if nullable else "") + kind
    return [f"{ind}{name}({out}, {expr})"]


def decode_scalar(el: str, nullable: bool, compact: bool, target: str, ind: str) -> list[str]:
    if el in FIXED:
        fmt = FIXED[el]
        lines = [f"{ind}({target},) = _S_{fmt.replace('?', 'o')}.unpack_from(buf, pos)"]
        size = {"b": 1, "h": 2, "i": 4, "q": 8, "H": 2, "d": 8, "?": 1, "16s": 16}[fmt]
        lines.append(f"{ind}pos += {size}")
        if el == "uuid":
            lines.append(f"{ind}{target} = make_uuid({target})")
        return lines
    kind = {"string": "str", "bytes": "bytes", "records": "records"}[el]
    name = "r_" + ("c" if compact else "") + ("n" if nullable else "") + kind
    return [f"{ind}{target}, pos = {name}(buf, pos)"]


def decode_value(
    msg: Message, f: Field, vv: VersionView, target: str, ind: str, declare: bool = True
) -> list[str]:
    v = vv.version
    nullable = vv.nullable(f)
    compact = vv.compact(f)
    lines: list[str] = []
    if declare and nullable and (f.is_array or f.is_struct):
        lines.append(f"{ind}{target}: Any")
    if f.is_array:
        items, x = f"items_{f.attr}", f"x_{f.attr}"
        if compact:
            # Inline one-byte lengths; a short array needs no bound check against the buffer.
            lines.append(f"{ind}n = buf[pos] - 1")
            lines.append(f"{ind}if n < 0x7F:")
            lines.append(f"{ind}    pos += 1")
            lines.append(f"{ind}else:")
            lines.append(f"{ind}    n, pos = carray_len(buf, pos)")
        else:
            lines.append(f"{ind}n, pos = array_len(buf, pos)")
        if nullable:
            lines.append(f"{ind}if n < 0:")
            lines.append(f"{ind}    {target} = None")
            lines.append(f"{ind}else:")
            ind2 = ind + "    "
        else:
            lines.append(f"{ind}if n < 0:")
            lines.append(f"{ind}    raise MalformedMessage('null in non-nullable array {f.name}')")
            ind2 = ind
        el = f.element
        if f.is_struct:
            sub = msg.structs[el]
            fn = fn_name("d", msg, sub, v)
            lines.append(f"{ind2}{items}: list[Any] = []")
            lines.append(f"{ind2}for _ in range(n):")
            lines.append(f"{ind2}    {x}, pos = {fn}(buf, pos)")
            lines.append(f"{ind2}    {items}.append({x})")
            lines.append(f"{ind2}{target} = {items}")
        elif el in FIXED and el != "uuid":
            fmt = FIXED[el]
            size = {"b": 1, "h": 2, "i": 4, "q": 8, "H": 2, "d": 8, "?": 1}[fmt]
            lines.append(f'{ind2}{target} = list(struct.unpack_from(">%d{fmt}" % n, buf, pos))')
            lines.append(f"{ind2}pos += {size} * n")
        else:
            lines.append(f"{ind2}{items}: list[Any] = []")
            lines.append(f"{ind2}for _ in range(n):")
            lines.extend(decode_scalar(el, False, compact, x, ind2 + "    "))
            lines.append(f"{ind2}    {items}.append({x})")
            lines.append(f"{ind2}{target} = {items}")
        return lines
    if f.is_struct:
        sub = msg.structs[f.element]
        fn = fn_name("d", msg, sub, v)
        if nullable:
            lines.append(f"{ind}(marker,) = _S_b.unpack_from(buf, pos)")
            lines.append(f"{ind}pos += 1")
            lines.append(f"{ind}if marker < 0:")
            lines.append(f"{ind}    {target} = None")
            lines.append(f"{ind}else:")
            lines.append(f"{ind}    {target}, pos = {fn}(buf, pos)")
        else:
            lines.append(f"{ind}{target}, pos = {fn}(buf, pos)")
        return lines
    return decode_scalar(f.element, nullable, compact, target, ind)


def default_check(msg: Message, f: Field, expr: str) -> str:
    """A Python condition that is true when `expr` differs from the field's default."""
    d, factory = default_expr(msg, f)
    if factory:
        if f.is_array:
            return f"{expr}"  # a non-empty list (None never reaches here unless nullable)
        return f"{expr} != {msg.name}.{f.element}()"
    if d == "None":
        return f"{expr} is not None"
    return f"{expr} != {d}"


def decoded_default(msg: Message, f: Field) -> str:
    expr, factory = default_expr(msg, f)
    if not factory:
        return expr
    return "[]" if f.is_array else f"{msg.name}.{f.element}()"


def struct_size(fmt: str) -> int:
    import struct as _struct

    return _struct.calcsize(">" + fmt)


def emit_encoder(msg: Message, s: Struct, version: int, pool: StructPool) -> list[str]:
    vv = VersionView(msg, version)
    cls = msg.name if s is msg.top else f"{msg.name}.{s.name}"
    lines = [f"def {raw_fn_name('e', msg, s, version)}(o: {cls}, out: bytearray) -> None:"]
    body: list[str] = []
    run: list[Field] = []

    def flush() -> None:
        if not run:
            return
        fmt = "".join(FIXED[f.element] for f in run)
        name = pool.get(fmt)
        args = ", ".join(f"o.{f.attr}.bytes" if f.element == "uuid" else f"o.{f.attr}" for f in run)
        body.append(f"    out += {name}.pack({args})")
        run.clear()

    tagged: list[Field] = []
    for f in s.fields:
        if not vv.present(f):
            if not f.ignorable:
                body.append(f"    if {default_check(msg, f, 'o.' + f.attr)}:")
                body.append(f"        raise version_error({f.name!r})")
            continue
        if vv.is_tagged(f):
            tagged.append(f)
            continue
        if is_fixed(f, vv):
            run.append(f)
            continue
        flush()
        body.extend(encode_value(msg, f, vv, f"o.{f.attr}", "out", "    "))
    flush()
    if vv.flexible:
        if not tagged:
            body.append("    out.append(0)")
        else:
            body.append("    tags: list[tuple[int, bytearray]] = []")
            for f in sorted(tagged, key=lambda t: t.tag or 0):
                body.append(f"    if {default_check(msg, f, 'o.' + f.attr)}:")
                body.append("        t = bytearray()")
                body.extend(encode_value(msg, f, vv, f"o.{f.attr}", "t", "        "))
                body.append(f"        tags.append(({f.tag}, t))")
            body.append("    write_uvarint(out, len(tags))")
            body.append("    for tag, data in tags:")
            body.append("        w_tagged(out, tag, data)")
    if not body:
        body.append("    pass")
    return lines + body


def emit_decoder(msg: Message, s: Struct, version: int, pool: StructPool) -> list[str]:
    vv = VersionView(msg, version)
    cls = msg.name if s is msg.top else f"{msg.name}.{s.name}"
    lines = [f"def {raw_fn_name('d', msg, s, version)}(buf: memoryview, pos: int) -> tuple[{cls}, int]:"]
    body: list[str] = []
    run: list[Field] = []
    kwargs: list[str] = []

    def flush() -> None:
        if not run:
            return
        fmt = "".join(FIXED[f.element] for f in run)
        name = pool.get(fmt)
        targets = ", ".join(f"f_{f.attr}" for f in run)
        trailing = "," if len(run) == 1 else ""
        body.append(f"    {targets}{trailing} = {name}.unpack_from(buf, pos)")
        body.append(f"    pos += {struct_size(fmt)}")
        for f in run:
            if f.element == "uuid":
                body.append(f"    f_{f.attr} = make_uuid(f_{f.attr})")
        run.clear()

    tagged: list[Field] = []
    for f in s.fields:
        if not vv.present(f):
            continue
        if vv.is_tagged(f):
            tagged.append(f)
            continue
        kwargs.append(f"{f.attr}=f_{f.attr}")
        if is_fixed(f, vv):
            run.append(f)
            continue
        flush()
        body.extend(decode_value(msg, f, vv, f"f_{f.attr}", "    "))
    flush()
    if vv.flexible:
        if not tagged:
            body.append("    if buf[pos]:")
            body.append("        pos = skip_tagged(buf, pos)")
            body.append("    else:")
            body.append("        pos += 1")
        else:
            for f in tagged:
                body.append(f"    f_{f.attr}: Any = {decoded_default(msg, f)}")
                kwargs.append(f"{f.attr}=f_{f.attr}")
            body.append("    count, pos = read_uvarint(buf, pos)")
            body.append("    for _ in range(count):")
            body.append("        tag, pos = read_uvarint(buf, pos)")
            body.append("        size, pos = read_uvarint(buf, pos)")
            body.append("        end = pos + size")
            body.append("        if end > len(buf):")
            body.append("            raise MalformedMessage('tagged field runs past the end')")
            first = True
            for f in sorted(tagged, key=lambda t: t.tag or 0):
                body.append(f"        {'if' if first else 'elif'} tag == {f.tag}:")
                first = False
                body.extend(decode_value(msg, f, vv, f"f_{f.attr}", "            ", declare=False))
                body.append("            if pos != end:")
                body.append(
                    f"                raise MalformedMessage('tagged field {f.name} has the wrong size')"
                )
            body.append("        pos = end")
    ctor = cls if s is msg.top else f"_C_{msg.name}_{s.name}"
    body.append(f"    return {ctor}({', '.join(kwargs)}), pos")
    return lines + body


# --------------------------------------------------------------------------- module


HEADER = '''\
# GENERATED FILE, DO NOT EDIT.
# Generated by tools/generate_protocol.py from Apache Kafka's message schemas
# ({count} files, {from_jar} of them from {jar}).
# Change the generator and run `make generate` instead.
"""Kafka protocol messages: one class per request, response and header, with one
specialised encoder and decoder per version. See docs/protocol.md."""

from __future__ import annotations

import struct
import uuid
from typing import Any, ClassVar

import msgspec

from aioshare.protocol._codec import (
    NIL_UUID,
    ApiMessage,
    array_len,
    carray_len,
    make_uuid,
    null_error,
    r_bytes,
    r_cbytes,
    r_cnbytes,
    r_cnrecords,
    r_cnstr,
    r_crecords,
    r_cstr,
    r_nbytes,
    r_nrecords,
    r_nstr,
    r_records,
    r_str,
    read_uvarint,
    skip_tagged,
    version_error,
    w_array_len,
    w_bytes,
    w_carray_len,
    w_cbytes,
    w_cnbytes,
    w_cnstr,
    w_cstr,
    w_nbytes,
    w_nstr,
    w_str,
    w_tagged,
    write_uvarint,
)
from aioshare.protocol.errors import MalformedMessage

'''


def read_schemas(schema_dir: Path, jar: Path) -> dict[str, tuple[str, str]]:
    """Schema file name -> (where it was read, its text): SCHEMA_DIR's files plus JAR_MESSAGES."""
    files = sorted(schema_dir.glob("*.json"))
    if not files:
        raise SystemExit(f"no schema files in {schema_dir}")
    schemas = {p.name: (p.name, p.read_text(encoding="utf-8")) for p in files}
    try:
        archive = zipfile.ZipFile(jar)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SystemExit(f"cannot read {jar}: {exc}") from None
    with archive:
        for name in JAR_MESSAGES:
            if f"{name}.json" in schemas:
                # Read twice would hide which one the codec came from: shorten JAR_MESSAGES.
                raise SystemExit(f"{name}.json is in {schema_dir} now: remove it from JAR_MESSAGES")
            entry = JAR_SCHEMA_PATH.format(name=name)
            try:
                text = archive.read(entry).decode("utf-8")
            except KeyError:
                raise SystemExit(f"{jar} has no {entry}") from None
            schemas[f"{name}.json"] = (f"{jar.name}!{entry}", text)
    return dict(sorted(schemas.items()))


def generate(schema_dir: Path, jar: Path) -> str:
    schemas = read_schemas(schema_dir, jar)
    messages = [load_message(source, text) for source, text in schemas.values()]
    pool = StructPool()
    for fmt in ("b", "h", "i", "q", "H", "d", "?", "16s"):
        pool.get(fmt)
    classes: list[str] = []
    codecs: list[str] = []
    for msg in messages:
        classes.extend(emit_classes(msg))
        classes.extend(["", ""])
        versions = range(msg.valid.low, msg.valid.high + 1)
        for s in [*msg.structs.values(), msg.top]:
            seen: dict[tuple[str, ...], str] = {}
            for v in versions:
                for emit in (emit_encoder, emit_decoder):
                    fn = emit(msg, s, v, pool)
                    key = (fn[0].split("(", 1)[1], *fn[1:])
                    name = fn[0].split("(", 1)[0].removeprefix("def ")
                    if key in seen:
                        CANONICAL[name] = seen[key]
                        continue
                    seen[key] = name
                    codecs.extend([*fn, "", ""])
        enc = ", ".join(f"{v}: {fn_name('e', msg, msg.top, v)}" for v in versions)
        dec = ", ".join(f"{v}: {fn_name('d', msg, msg.top, v)}" for v in versions)
        codecs.append(f"{msg.name}._encoders = {{{enc}}}")
        codecs.append(f"{msg.name}._decoders = {{{dec}}}")
        codecs.extend(["", ""])
    requests = [m for m in messages if m.kind == "request"]
    responses = [m for m in messages if m.kind == "response"]
    registry = [
        "REQUESTS: dict[int, type[ApiMessage]] = {",
        *[f"    {m.api_key}: {m.name}," for m in sorted(requests, key=lambda m: m.api_key)],
        "}",
        "RESPONSES: dict[int, type[ApiMessage]] = {",
        *[f"    {m.api_key}: {m.name}," for m in sorted(responses, key=lambda m: m.api_key)],
        "}",
        "",
        "__all__ = [",
        *[f'    "{m.name}",' for m in messages],
        '    "REQUESTS",',
        '    "RESPONSES",',
        "]",
    ]
    text = (
        HEADER.format(count=len(schemas), from_jar=len(JAR_MESSAGES), jar=jar.name)
        + "\n".join(pool.emit())
        + "\n\n\n"
        + "\n".join(classes)
        + "\n".join(codecs)
        + "\n".join(registry)
        + "\n"
    )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("schemas", nargs="?", type=Path, default=DEFAULT_SCHEMAS)
    parser.add_argument(
        "--jar",
        type=Path,
        required=True,
        help="kafka-clients-<version>.jar, for the messages SCHEMA_DIR lacks (make kafka-jars resolves it)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if the committed module differs")
    args = parser.parse_args(argv)
    text = generate(args.schemas, args.jar)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(
                f"{args.out} is out of date with {args.schemas} and {args.jar.name}: run `make generate`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out} matches {args.schemas} and {args.jar.name}")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
