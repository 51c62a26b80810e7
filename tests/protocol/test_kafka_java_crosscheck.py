"""Our wire codec against Kafka's own generated message classes (``kafka-clients``), both ways.

For each Kafka version in ``TESTED_KAFKA_VERSIONS``, ``tests/java/CodecCrossCheck.java`` is
compiled against that version's jars and run once (one JVM for the whole batch).  It first lists
every API the jar knows (version range, and which versions are flexible); the cases then cover
every request and response, and the two headers, at every version both our schemas and the jar
know.  Where the ranges differ only the shared versions are compared; the test prints the rest.

Each case is one value of the message, with two independent descriptions of it sent to Kafka:
our encoding of it, and a JSON rendering built by field name from the JSON schemas
(``schema_strategies``' own reader, not the generator), which Kafka turns into its message object
with its generated ``*JsonConverter``.  Kafka

* reads our bytes, must consume all of them, and writes the message back (``rewritten``);
* builds the message from the JSON and writes it (``written``);
* checks that the message read from our bytes equals the one built from the JSON.

Direction (a), ours -> Kafka: ``rewritten`` must equal our bytes, and Kafka's reading of them
must be the value we meant (the equality with the JSON-built message).  Byte equality alone would
not prove the second part: a codec that swapped two same-typed fields in both its encoder and
its decoder produces bytes Kafka reads into the wrong fields and writes back identically.

Direction (b), Kafka -> ours: ``written`` comes from Kafka's writer applied to a message Kafka
built from field names alone, so our encoder played no part in those bytes.  Our decoder must
turn them into the original value, and our encoder must then reproduce them exactly.  (Decoding
Kafka's ``rewritten`` instead would only decode our own bytes again, which the round-trip tests
already do.)

Values, per message and version: the all-defaults instance (every tagged field at its default,
so left off the wire: Kafka must read back the defaults we meant, which checks our defaults where
they matter on the wire), ``POPULATED_DRAWS`` "populated" draws (arrays non-empty, nothing null,
every tagged field off its default, so written) and ``PLAIN_DRAWS`` ordinary draws (None and empty
lists where allowed); Hypothesis draws with a fixed seed per message-version, so the cases are the
same on every run.  Kafka's reader is stricter than ours in places, and the values respect it
deliberately rather than having mismatches excused: null only where the version allows it (the
strategies' rule already), strings within 32767 bytes, ``records`` fields holding nothing or
valid v2 record batches.

Fields outside their versions (``AbsentCase``): per message-version, a populated value with one
field set that the version does not carry, for every such field, and once with none.  Kafka (from
the JSON) and we must then both refuse to encode it, or both drop the field as ignorable and
write the same bytes; the case with none set also checks that we and Kafka agree on the default
of every field the version lacks.

``test_codec_matches_kafka_java`` prints the counts (with ``-s``) and what differs between our
schemas and the jar's version ranges; it fails unless every shared message-version was compared
in both directions and every tagged field was written at least once.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from aioshare.protocol import messages
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import ProtocolError, UnsupportedVersionForField
from aioshare.protocol.records import RecordToWrite, encode_batch
from aioshare.protocol.types import AckType
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.java import compile_java, java_command
from aioshare.testing.kafka.requirement import in_ci, require
from tests.protocol import schema_strategies as ss

pytestmark = pytest.mark.interop

SOURCE = Path(__file__).resolve().parents[1] / "java" / "CodecCrossCheck.java"
POPULATED_DRAWS = 3
PLAIN_DRAWS = 4
# Generous: the batch takes a few seconds; this only bounds a hung JVM.
JVM_TIMEOUT = 180.0
MAX_REPORTED = 25
MAX_FAILURE_TEXT = 4000
ABSENT_IDS = 1_000_000  # AbsentCase ids start here, clear of Case ids

Kind = tuple[str, int]  # (request|response|request-header|response-header, api key; -1 for headers)
Key = tuple[str, int, int]  # a Kind and a version
MESSAGES: dict[Kind, type[ApiMessage]] = {
    **{("request", key): cls for key, cls in messages.REQUESTS.items()},
    **{("response", key): cls for key, cls in messages.RESPONSES.items()},
    ("request-header", -1): messages.RequestHeader,
    ("response-header", -1): messages.ResponseHeader,
}


# --------------------------------------------------------------------------- values


# Kafka reads records lazily, but a records field must hold record batches; these are valid ones
# (fixed timestamps, so the bytes are the same on every run).
_BATCH_A = encode_batch([RecordToWrite(b"k", b"v", [("h", b"x")], timestamp_ms=1_700_000_000_000)])
_BATCH_B = encode_batch(
    [
        RecordToWrite(None, b"second", (), timestamp_ms=1_700_000_000_001),
        RecordToWrite(b"k3", None, [("a", None)], timestamp_ms=1_700_000_000_002),
    ],
    base_offset=1,
)
RECORDS = st.sampled_from([b"", _BATCH_A, _BATCH_A + _BATCH_B])


def draw(strategy: st.SearchStrategy[Any], count: int, key: str) -> list[Any]:
    """``count`` values of ``strategy``, the same on every run (seeded from ``key``)."""
    drawn: list[Any] = []

    @seed(zlib.crc32(key.encode()))
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


def kafka_json(
    value: Any, fields: list[ss.SchemaField], version: int, *, absent: bool = False
) -> dict[str, Any]:
    """``value`` as Kafka's generated JSON converters read it: camelCase field names, bytes and
    records in base64, uuids in Kafka's own base64url form.  Only the fields ``version`` carries,
    unless ``absent``: then also those it does not (except struct-typed ones, which Kafka's JSON
    reader refuses outside their versions), which Kafka sets on its message all the same."""
    out: dict[str, Any] = {}
    for f in fields:
        if version in f.versions or (absent and not f.is_struct):
            # Kafka's generator names JSON fields with the first letter lower-cased.
            out[f.name[0].lower() + f.name[1:]] = _json_value(getattr(value, f.attr), f, version, absent)
    return out


def _json_value(value: Any, f: ss.SchemaField, version: int, absent: bool) -> Any:
    if value is None:
        return None
    if f.is_array:
        return [_json_element(x, f, version, absent) for x in value]
    return _json_element(value, f, version, absent)


def _json_element(value: Any, f: ss.SchemaField, version: int, absent: bool) -> Any:
    if f.is_struct:
        assert f.fields is not None
        return kafka_json(value, f.fields, version, absent=absent)
    if f.element in ("bytes", "records"):
        return base64.b64encode(bytes(value)).decode()
    if f.element == "uuid":
        assert isinstance(value, uuid.UUID)
        return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")
    return value


def tagged_paths(fields: list[ss.SchemaField], version: int, prefix: str = "") -> set[str]:
    """Every tagged field ``version`` can carry, nested ones included, as dotted paths."""
    found: set[str] = set()
    for f in fields:
        if version not in f.versions:
            continue
        path = prefix + f.name
        if f.tag is not None and version in f.tagged:
            found.add(path)
        if f.fields is not None:
            found |= tagged_paths(f.fields, version, path + ".")
    return found


def written_tagged(
    owner: type, value: Any, fields: list[ss.SchemaField], version: int, prefix: str = ""
) -> set[str]:
    """The tagged fields ``value`` holds off their default, i.e. that go on the wire."""
    found: set[str] = set()
    for f in fields:
        if version not in f.versions:
            continue
        v = getattr(value, f.attr)
        path = prefix + f.name
        if f.tag is not None and version in f.tagged and v != ss.schema_default(owner, f):
            found.add(path)
        if f.fields is not None and v is not None:
            for item in v if f.is_array else [v]:
                found |= written_tagged(owner, item, f.fields, version, path + ".")
    return found


@dataclass(frozen=True)
class Case:
    id: int
    kind: str
    cls: type[ApiMessage]
    version: int
    label: str
    value: Any
    data: bytes
    json: str

    @property
    def key(self) -> Key:
        return (self.kind, self.cls.API_KEY, self.version)

    @property
    def name(self) -> str:
        return f"{self.cls.__name__} v{self.version} ({self.label})"

    def line(self) -> str:
        return f"{self.id} {self.kind} {self.cls.API_KEY} {self.version} {self.data.hex()} {self.json}"


@functools.cache
def our_cases() -> dict[Key, list[Case]]:
    """Every message-version our codec has, with its values and their two descriptions."""
    cases: dict[Key, list[Case]] = {}
    next_id = 0
    for (kind, key), cls in MESSAGES.items():
        schema = ss.schema_for(cls.__name__)
        assert schema is not None, f"no schema for {cls.__name__} in {ss.SCHEMA_DIR}"
        for version in range(cls.MIN_VERSION, cls.MAX_VERSION + 1):
            seed_key = f"{cls.__name__}-v{version}"
            populated = ss.message_strategy(cls, version, populated=True, records=RECORDS)
            plain = ss.message_strategy(cls, version, records=RECORDS)
            values = [("defaults", cls())]
            values += [
                (f"populated-{i}", v) for i, v in enumerate(draw(populated, POPULATED_DRAWS, seed_key))
            ]
            values += [(f"drawn-{i}", v) for i, v in enumerate(draw(plain, PLAIN_DRAWS, seed_key))]
            made = []
            for label, value in values:
                text = json.dumps(kafka_json(value, schema.fields, version), separators=(",", ":"))
                made.append(Case(next_id, kind, cls, version, label, value, value.encode(version), text))
                next_id += 1
            cases[(kind, key, version)] = made
    return cases


def absent_fields(
    fields: list[ss.SchemaField], version: int, path: tuple[ss.SchemaField, ...] = ()
) -> Iterator[tuple[ss.SchemaField, ...]]:
    """Paths to the fields ``version`` does not carry, inside the structs it does carry.

    Struct-typed ones are left out: Kafka's JSON reader will not build a struct outside its
    versions, so Kafka could not be handed such a value."""
    for f in fields:
        if version not in f.versions:
            if not f.is_struct:
                yield (*path, f)
        elif f.fields is not None:
            yield from absent_fields(f.fields, version, (*path, f))


def off_default(owner: type, f: ss.SchemaField) -> Any:
    """A value of field ``f`` that is not its default."""
    default = ss.schema_default(owner, f)
    element: Any
    if f.element in ss.INT_RANGES:
        element = 2 if default == 1 else 1
    else:
        element = {
            "bool": not default,
            "string": "x",
            "bytes": b"x",
            "records": _BATCH_A,
            "uuid": uuid.UUID(int=1),
        }[f.element]
    return [element] if f.is_array else element


def with_field(value: Any, path: tuple[ss.SchemaField, ...], new: Any) -> Any:
    """``value`` with the field at ``path`` set to ``new`` (in the first element of arrays)."""
    head, rest = path[0], path[1:]
    if not rest:
        return msgspec.structs.replace(value, **{head.attr: new})
    inner = getattr(value, head.attr)
    if head.is_array:
        return msgspec.structs.replace(value, **{head.attr: [with_field(inner[0], rest, new), *inner[1:]]})
    return msgspec.structs.replace(value, **{head.attr: with_field(inner, rest, new)})


@dataclass(frozen=True)
class AbsentCase:
    """A value for ``version`` with one field set that the version does not carry (``path``), or
    (path "") none: encoding it must fail on both sides or give the same bytes.  Whether a field
    is silently dropped ("ignorable") or refused, and what counts as its default, is the
    generator's reading of the schemas, checked here against Kafka's."""

    id: int
    kind: str
    cls: type[ApiMessage]
    version: int
    path: str
    value: Any
    data: bytes | None  # None: we refuse to encode it (UnsupportedVersionForField)
    json: str

    @property
    def key(self) -> Key:
        return (self.kind, self.cls.API_KEY, self.version)

    @property
    def name(self) -> str:
        return f"{self.cls.__name__} v{self.version} with {self.path or 'no field'} set outside its versions"

    def line(self) -> str:
        return f"{self.id} {self.kind} {self.cls.API_KEY} {self.version} - {self.json}"


@functools.cache
def our_absent_cases() -> dict[Key, list[AbsentCase]]:
    cases: dict[Key, list[AbsentCase]] = {}
    next_id = ABSENT_IDS
    for key, made in our_cases().items():
        base = next(c for c in made if c.label == "populated-0")  # arrays non-empty: paths exist
        schema = ss.schema_for(base.cls.__name__)
        assert schema is not None
        variants = [("", base.value)]
        for path in absent_fields(schema.fields, base.version):
            new = off_default(base.cls, path[-1])
            variants.append((".".join(f.name for f in path), with_field(base.value, path, new)))
        cases[key] = []
        for label, value in variants:
            try:
                data: bytes | None = value.encode(base.version)
            except UnsupportedVersionForField:
                data = None
            text = json.dumps(
                kafka_json(value, schema.fields, base.version, absent=True), separators=(",", ":")
            )
            cases[key].append(
                AbsentCase(next_id, base.kind, base.cls, base.version, label, value, data, text)
            )
            next_id += 1
    return cases


# --------------------------------------------------------------------------- Kafka's side


@dataclass(frozen=True)
class JarMessage:
    """One request, response or header type as the jar knows it."""

    name: str
    low: int
    high: int  # unstable latest versions included
    stable_high: int
    flexible: dict[int, bool]


def parse_listing(lines: Iterable[str]) -> dict[Kind, JarMessage]:
    known: dict[Kind, JarMessage] = {}
    for line in lines:
        words = line.split()
        # '?' would mean a version in range without a schema: nothing to compare it with.
        assert "?" not in line, line
        if words[0] == "api":
            _, key, name, low, high, stable, *versions = words
            for i, kind in enumerate(("request", "response")):
                flexible = {int(v): flags[i] == "F" for v, flags in (item.split(":") for item in versions)}
                message = JarMessage(name + kind.capitalize(), int(low), int(high), int(stable), flexible)
                known[(kind, int(key))] = message
        else:
            assert words[0] == "header", line
            _, kind, low, high, *versions = words
            flexible = {int(v): flag == "F" for v, flag in (item.split(":") for item in versions)}
            name = kind.capitalize() + "Header"
            known[(f"{kind}-header", -1)] = JarMessage(name, int(low), int(high), int(high), flexible)
    return known


def _feed(stdin: IO[str], lines: list[str]) -> None:
    try:
        stdin.write("".join(line + "\n" for line in lines))
        stdin.close()
    except BrokenPipeError:
        pass  # the JVM died; its exit status and stderr say why


def run_cross_check(
    command: list[str], cases_for: Callable[[dict[Kind, JarMessage]], list[Case | AbsentCase]]
) -> tuple[dict[Kind, JarMessage], list[Case | AbsentCase], dict[int, str]]:
    """One JVM: read its listing, send the cases ``cases_for(listing)`` picks, collect the answers."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
        )
        assert proc.stdin is not None and proc.stdout is not None
        watchdog = threading.Timer(JVM_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            listing: list[str] = []
            for line in proc.stdout:
                if line == "end\n":
                    break
                listing.append(line)
            jar = parse_listing(listing)
            cases = cases_for(jar)
            # Written from a thread: Kafka answers while it reads, and a full stdout pipe would
            # otherwise stall both sides.
            writer = threading.Thread(target=_feed, args=(proc.stdin, [c.line() for c in cases]))
            writer.start()
            output = proc.stdout.read()
            writer.join()
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        errors = stderr.read()
    assert returncode == 0, (
        f"CodecCrossCheck exited {returncode} (killed after {JVM_TIMEOUT:.0f} s?):\n{errors}"
    )
    answers: dict[int, str] = {}
    # Only "\n" ends an answer: an error's text may hold other characters splitlines() splits on.
    for line in output.split("\n")[:-1]:
        case_id, _, answer = line.partition(" ")
        answers[int(case_id)] = answer
    return jar, cases, answers


# --------------------------------------------------------------------------- the test


def _require_schemas() -> None:
    # The same rule as a missing JDK: skip on a laptop, fail under CI.
    if not ss.SCHEMA_DIR.is_dir():
        message = f"Kafka's message schemas are not checked out at {ss.SCHEMA_DIR}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 600 else text[:600] + "..."


def check_answer(case: Case, answer: str | None) -> tuple[list[str], bool, bool]:
    """Failures for one case, and whether direction (a) / (b) held."""
    if answer is None:
        return [f"{case.name}: no answer from Kafka"], False, False
    status, *rest = answer.split(" ")
    if status != "ok":
        return [f"{case.name}: Kafka failed: {' '.join(rest)}\n    ours: {case.data.hex()}"], False, False
    rewritten, written = rest
    failures = []
    ours_ok = rewritten == case.data.hex()
    if not ours_ok:
        failures.append(
            f"{case.name}: (a) Kafka wrote our bytes back differently\n    ours:  {case.data.hex()}\n    kafka: {rewritten}"
        )
    theirs = bytes.fromhex(written)
    theirs_ok = False
    try:
        decoded = case.cls.decode(theirs, case.version)
    except ProtocolError as exc:
        failures.append(f"{case.name}: (b) we cannot decode Kafka's bytes {written}: {exc}")
    else:
        if decoded != case.value:
            failures.append(
                f"{case.name}: (b) Kafka's bytes decode to another value\n    kafka: {written}\n"
                f"    meant:   {_short(case.value)}\n    decoded: {_short(decoded)}"
            )
        elif decoded.encode(case.version) != theirs:
            failures.append(f"{case.name}: (b) re-encoding Kafka's bytes changed them\n    kafka: {written}")
        else:
            theirs_ok = True
    return failures, ours_ok, theirs_ok


def check_absent(case: AbsentCase, answer: str | None) -> list[str]:
    if answer is None:
        return [f"{case.name}: no answer from Kafka"]
    status, _, rest = answer.partition(" ")
    theirs: str | None
    if status == "ok":
        theirs = rest.split(" ")[1]
    elif rest.startswith("org.apache.kafka.common.errors.UnsupportedVersionException"):
        theirs = None
    else:
        return [f"{case.name}: Kafka failed: {rest}"]
    ours = None if case.data is None else case.data.hex()
    if ours != theirs:
        return [f"{case.name}:\n    ours:  {ours or 'refused'}\n    kafka: {theirs or rest}"]
    return []


@pytest.mark.parametrize("kafka_version", TESTED_KAFKA_VERSIONS, ids=lambda v: f"kafka-{v}")
def test_codec_matches_kafka_java(kafka_version: str) -> None:
    _require_schemas()
    started = time.perf_counter()
    # Drawn once, for the first Kafka version; the others reuse them.
    ours, absent = our_cases(), our_absent_cases()
    drawing = time.perf_counter() - started
    classes = require(lambda: compile_java([SOURCE], kafka_version))
    command = require(
        lambda: java_command(kafka_version, "CodecCrossCheck", "list", "check", classes=classes)
    )
    shared: set[Key] = set()
    differences: list[str] = []

    def pick(jar: dict[Kind, JarMessage]) -> list[Case | AbsentCase]:
        for kind, cls in MESSAGES.items():
            known = jar.get(kind)
            if known is None:
                differences.append(f"{cls.__name__}: unknown to Kafka {kafka_version}")
                continue
            if (known.low, known.high) != (cls.MIN_VERSION, cls.MAX_VERSION):
                differences.append(
                    f"{cls.__name__}: ours v{cls.MIN_VERSION}-{cls.MAX_VERSION}, "
                    f"Kafka {kafka_version} v{known.low}-{known.high}"
                )
            for version in range(max(known.low, cls.MIN_VERSION), min(known.high, cls.MAX_VERSION) + 1):
                shared.add((*kind, version))
        picked: list[Case | AbsentCase] = []
        for message_version in sorted(shared):
            picked += ours[message_version]
            picked += absent[message_version]
        return picked

    jar, sent, answers = run_cross_check(command, pick)
    cases = [c for c in sent if isinstance(c, Case)]
    absent_sent = [c for c in sent if isinstance(c, AbsentCase)]

    failures: list[str] = []
    for kind, key, version in sorted(shared):
        cls = MESSAGES[(kind, key)]
        if jar[(kind, key)].flexible[version] != cls.is_flexible(version):
            failures.append(
                f"{cls.__name__} v{version}: flexible here {cls.is_flexible(version)}, not in Kafka"
            )
    # A message-version counts as compared in a direction once it has cases, all of which held.
    compared: dict[str, set[Key]] = {"a": {c.key for c in cases}, "b": {c.key for c in cases}}
    tagged_expected: set[tuple[Key, str]] = set()
    tagged_written: set[tuple[Key, str]] = set()
    for case in cases:
        case_failures, ours_ok, theirs_ok = check_answer(case, answers.get(case.id))
        failures += case_failures
        if not ours_ok:
            compared["a"].discard(case.key)
        if not theirs_ok:
            compared["b"].discard(case.key)
        schema = ss.schema_for(case.cls.__name__)
        assert schema is not None
        tagged_expected |= {(case.key, p) for p in tagged_paths(schema.fields, case.version)}
        tagged_written |= {
            (case.key, p) for p in written_tagged(case.cls, case.value, schema.fields, case.version)
        }
    absent_outcomes = {"refused": 0, "dropped": 0}
    for absent_case in absent_sent:
        failures += check_absent(absent_case, answers.get(absent_case.id))
        if absent_case.path:
            absent_outcomes["refused" if absent_case.data is None else "dropped"] += 1

    elapsed = time.perf_counter() - started
    api_keys = {key for _, key, _ in shared if key >= 0}
    by_kind = {kind: sum(k == kind for k, _, _ in shared) for kind in ("request", "response")}
    headers = len(shared) - sum(by_kind.values())
    flexible = sum(MESSAGES[(kind, key)].is_flexible(version) for kind, key, version in shared)
    summary = (
        f"Kafka {kafka_version}: {len(api_keys)} API keys, {len(shared)} message-versions "
        f"({by_kind['request']} requests, {by_kind['response']} responses, {headers} headers; "
        f"{flexible} flexible, {len(shared) - flexible} not), {len(cases)} cases; compared "
        f"ours->Kafka {len(compared['a'])} and Kafka->ours {len(compared['b'])} message-versions; "
        f"{len(tagged_written)} of {len(tagged_expected)} tagged fields written; "
        f"{len(absent_sent)} more cases setting one field outside its versions "
        f"({absent_outcomes['refused']} refused, {absent_outcomes['dropped']} dropped as ignorable, "
        "by both sides alike) or none; "
        f"{elapsed:.1f} s ({drawing:.1f} s of it drawing values)"
    )
    print(f"\n{summary}")
    for line in differences:
        print(f"  schema/jar difference: {line}")
    unstable = [
        f"{known.name} v{known.stable_high + 1}-{known.high}"
        for kind, known in jar.items()
        if kind in MESSAGES and known.stable_high < known.high
    ]
    if unstable:
        print(f"  marked unstable in Kafka {kafka_version}, compared all the same: {', '.join(unstable)}")

    assert not failures, (
        f"{len(failures)} mismatches with Kafka {kafka_version}'s classes ({summary}):\n"
        + "\n".join(failure[:MAX_FAILURE_TEXT] for failure in failures[:MAX_REPORTED])
    )
    # Nothing shared may go uncompared, in either direction.
    assert shared, f"no message-version is known to both us and Kafka {kafka_version}"
    assert compared["a"] == shared, sorted(shared - compared["a"])
    assert compared["b"] == shared, sorted(shared - compared["b"])
    assert tagged_written == tagged_expected, sorted(tagged_expected - tagged_written)


@pytest.mark.parametrize("kafka_version", TESTED_KAFKA_VERSIONS, ids=lambda v: f"kafka-{v}")
def test_ack_type_ids_match_kafka_java(kafka_version: str) -> None:
    """Kafka's ``AcknowledgeType`` ids, read from its jar, are ours (GAP, 0, is wire-only)."""
    classes = require(lambda: compile_java([SOURCE], kafka_version))
    command = require(lambda: java_command(kafka_version, "CodecCrossCheck", "ack-types", classes=classes))
    done = subprocess.run(command, capture_output=True, text=True, timeout=JVM_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-MAX_FAILURE_TEXT:]
    lines = done.stdout.split("\n")
    assert "end" in lines, done.stdout
    theirs = {
        name: int(value) for _, name, value in (line.split() for line in lines if line.startswith("ack "))
    }
    ours = {t.name: t.value for t in AckType if t is not AckType.GAP}
    assert theirs == ours
