"""The JSON API under ``/api/`` that every page of ``aioshare web`` is drawn from.

Reads (GET): ``/api/overview``, ``/api/groups``, ``/api/groups/{group}``, ``/api/processes``,
``/api/errors``, ``/api/topics``, ``/api/dlq/{topic}``, ``/api/meta``.
Admin actions (POST, a JSON body; refused with 403 ``READ_ONLY`` under ``--read-only``):
``/api/groups/{group}/reset``, ``/api/groups/{group}/delete-offsets``,
``/api/groups/{group}/delete``, ``/api/groups/{group}/config``, ``/api/dlq/{topic}/replay``.

Errors are ``{"error": "...", "code": "..."}`` with a 4xx/5xx status: bad input 400, unknown
group or topic 404, Kafka's refusals (NON_EMPTY_GROUP, ...) 409 with Kafka's error name as the
code and its message in the text, an unreachable cluster 503.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import msgspec
from aiohttp import web

from aioshare.protocol.errors import (
    BrokerError,
    ConfigError,
    GroupIdNotFoundError,
    InvalidConfigError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
)
from aioshare.web.cluster import ClusterView, LagHistory, parse_reset_target
from aioshare.web.dlq import DeadLetterExplorer, NotADeadLetterError
from aioshare.web.reports import ReportStore

__all__ = ["ApiError", "add_routes", "check_group_id", "check_topic"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_MAX_GROUP_ID = 255
CHART_WINDOW = 1800.0  # seconds of history the charts show
_encoder = msgspec.json.Encoder()

# Where the server keeps what the handlers need (aiohttp's typed app keys).
CLUSTER = web.AppKey("cluster", ClusterView)
LAG = web.AppKey("lag", LagHistory)
DLQ = web.AppKey("dlq", DeadLetterExplorer)
STORE: web.AppKey[ReportStore] = web.AppKey("store")
SETTINGS = web.AppKey("settings", dict)


class ApiError(Exception):
    """A refusal with its HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=_encoder.encode(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, "code": code, **extra}, status)


# ---------------------------------------------------------------------------------- validation


def check_group_id(text: str) -> str:
    if not text or not text.strip():
        raise ApiError(400, "INVALID_GROUP_ID", "a group id must not be empty")
    if len(text) > _MAX_GROUP_ID:
        raise ApiError(400, "INVALID_GROUP_ID", f"a group id is at most {_MAX_GROUP_ID} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ApiError(400, "INVALID_GROUP_ID", "a group id must not contain control characters")
    return text


def check_topic(text: str) -> str:
    if not _TOPIC.match(text) or text in (".", ".."):
        raise ApiError(
            400,
            "INVALID_TOPIC",
            f"not a topic name: {text!r} (1-249 characters of ASCII letters, digits, '.', '_' and '-')",
        )
    return text


def _int_param(
    request: web.Request, name: str, *, minimum: int = 0, default: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "INVALID_PARAMETER", f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ApiError(400, "INVALID_PARAMETER", f"{name} must be >= {minimum}, got {value}")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "JSON_REQUIRED", "send a JSON body (Content-Type: application/json)")
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise ApiError(400, "INVALID_JSON", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_JSON", "the body must be a JSON object")
    return body


def _field(body: Mapping[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "MISSING_FIELD", f"{name!r} is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, "INVALID_FIELD", f"{name!r} must be a {kind.__name__}")
    return value


def _int_list(body: Mapping[str, Any], name: str) -> list[int] | None:
    value = _field(body, name, list, required=False)
    if value is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ApiError(400, "INVALID_FIELD", f"{name!r} must be a list of partition numbers (>= 0)")
    return list(value)


def _str_list(body: Mapping[str, Any], name: str) -> list[str]:
    value = _field(body, name, list, required=False) or []
    if not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, "INVALID_FIELD", f"{name!r} must be a list of names")
    return list(value)


# ---------------------------------------------------------------------------------- errors


def kafka_error(exc: KafkaError) -> NoReturn:
    """Kafka's refusal as an ApiError: its error name as the code, its message as the text."""
    if isinstance(exc, BrokerError):
        if isinstance(exc, GroupIdNotFoundError | UnknownTopicOrPartitionError):
            status = 404
        elif isinstance(exc, InvalidConfigError):
            status = 400
        elif isinstance(exc, NonEmptyGroupError) or not exc.retriable:
            status = 409
        else:
            status = 503
        raise ApiError(status, exc.name, str(exc)) from exc
    if isinstance(exc, NotADeadLetterError):
        raise ApiError(422, "NOT_A_DEAD_LETTER", str(exc)) from exc
    if isinstance(exc, ConfigError):
        raise ApiError(400, "INVALID_REQUEST", str(exc)) from exc
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError | NoBrokersAvailable):
        raise ApiError(503, "KAFKA_UNAVAILABLE", f"cannot reach Kafka: {exc}") from exc
    raise ApiError(502, type(exc).__name__, str(exc)) from exc


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        try:
            return await handler(request)
        except KafkaError as exc:
            kafka_error(exc)
        except (TimeoutError, OSError) as exc:
            raise ApiError(
                503, "KAFKA_UNAVAILABLE", f"cannot reach Kafka: {exc or type(exc).__name__}"
            ) from exc
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)


# ---------------------------------------------------------------------------------- views


def _store(request: web.Request) -> ReportStore:
    return request.app[STORE]


def _read_only(request: web.Request) -> bool:
    return bool(request.app[SETTINGS].get("read_only"))


def _require_writable(request: web.Request) -> None:
    if _read_only(request):
        raise ApiError(403, "READ_ONLY", "this console is read-only (aioshare web --read-only)")


async def meta(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return json_response(
        {
            "read_only": _read_only(request),
            "bootstrap_servers": settings.get("bootstrap_servers"),
            "report_topic": settings.get("report_topic"),
            "version": settings.get("version"),
            "now": time.time(),
        }
    )


async def overview(request: web.Request) -> web.Response:
    cluster, store = request.app[CLUSTER], _store(request)
    groups = await cluster.groups()
    request.app[LAG].add(groups)
    now = time.time()
    processes = store.processes(now)
    states: dict[str, int] = {}
    for g in groups:
        states[g.state] = states.get(g.state, 0) + 1
    return json_response(
        {
            "now": now,
            "groups": groups,
            "states": states,
            "lag": sum(g.lag or 0 for g in groups),
            "processes": processes,
            "series": store.series(None, window_s=CHART_WINDOW),
            "lag_series": request.app[LAG].series(None),
            "errors": _errors(store, 10),
        }
    )


async def groups(request: web.Request) -> web.Response:
    found = await request.app[CLUSTER].groups()
    request.app[LAG].add(found)
    return json_response(found)


async def group(request: web.Request) -> web.Response:
    group_id = check_group_id(request.match_info["group"])
    store = _store(request)
    detail = await request.app[CLUSTER].group(group_id)
    held = store.group_held(group_id)
    for p in detail.partitions:
        p.held = held.get((p.topic, p.partition), 0)
    return json_response(
        {
            "group": detail,
            "held": sum(held.values()),
            "delivery_counts": store.group_delivery_counts(group_id),
            "processes": store.group_processes(group_id),
            "errors": _errors(store, 20, group_id),
            "series": store.series(group_id, window_s=CHART_WINDOW),
            "lag_series": request.app[LAG].series(group_id),
            "now": time.time(),
            "read_only": _read_only(request),
        }
    )


async def processes(request: web.Request) -> web.Response:
    now = time.time()
    return json_response({"now": now, "processes": _store(request).processes(now)})


async def errors(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", minimum=1, default=100)
    group_id = request.query.get("group") or None
    found = _errors(_store(request), min(limit or 100, 1000), group_id)
    return json_response({"now": time.time(), "errors": found})


def _errors(store: ReportStore, limit: int, group_id: str | None = None) -> list[dict[str, Any]]:
    """The store's (process id, ErrorReport) pairs as flat objects, newest first."""
    return [
        {"process_id": pid, **msgspec.structs.asdict(e)} for pid, e in store.errors(limit, group_id=group_id)
    ]


async def topics(request: web.Request) -> web.Response:
    internal = request.query.get("internal", "") in ("1", "true", "yes")
    return json_response(await request.app[CLUSTER].topics(include_internal=internal))


async def dlq_browse(request: web.Request) -> web.Response:
    topic = check_topic(request.match_info["topic"])
    page = await request.app[DLQ].browse(
        topic,
        partition=_int_param(request, "partition"),
        offset=_int_param(request, "offset"),
        limit=_int_param(request, "limit", minimum=1, default=50) or 50,
    )
    return json_response({"page": page, "read_only": _read_only(request), "now": time.time()})


# ---------------------------------------------------------------------------------- actions


async def reset_offsets(request: web.Request) -> web.Response:
    _require_writable(request)
    group_id = check_group_id(request.match_info["group"])
    body = await _body(request)
    topic = check_topic(_field(body, "topic", str))
    try:
        to = parse_reset_target(_field(body, "to", str))
    except ValueError as exc:
        raise ApiError(400, "INVALID_RESET_TARGET", str(exc)) from None
    found = await request.app[CLUSTER].reset_offsets(group_id, topic, to, _int_list(body, "partitions"))
    failed = {p: v for p, v in found.items() if isinstance(v, BrokerError)}
    if failed and len(failed) == len(found):
        first = next(iter(failed.values()))
        kafka_error(first)
    return json_response(
        {
            "group_id": group_id,
            "topic": topic,
            "offsets": {str(p): v for p, v in found.items() if not isinstance(v, BrokerError)},
            "errors": {str(p): str(e) for p, e in failed.items()},
        }
    )


async def delete_offsets(request: web.Request) -> web.Response:
    _require_writable(request)
    group_id = check_group_id(request.match_info["group"])
    body = await _body(request)
    names = [check_topic(t) for t in _str_list(body, "topics")]
    if not names:
        raise ApiError(400, "MISSING_FIELD", "'topics' must name at least one topic")
    found = await request.app[CLUSTER].delete_offsets(group_id, names)
    failed = {t: e for t, e in found.items() if e is not None}
    if failed and len(failed) == len(found):
        kafka_error(next(iter(failed.values())))
    return json_response(
        {
            "group_id": group_id,
            "deleted": [t for t, e in found.items() if e is None],
            "errors": {t: str(e) for t, e in failed.items()},
        }
    )


async def delete_group(request: web.Request) -> web.Response:
    _require_writable(request)
    group_id = check_group_id(request.match_info["group"])
    await _body(request)
    await request.app[CLUSTER].delete_group(group_id)
    return json_response({"group_id": group_id, "deleted": True})


async def alter_config(request: web.Request) -> web.Response:
    _require_writable(request)
    group_id = check_group_id(request.match_info["group"])
    body = await _body(request)
    to_set = _field(body, "set", dict, required=False) or {}
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in to_set.items()):
        raise ApiError(400, "INVALID_FIELD", "'set' must map config names to string values")
    to_delete = _str_list(body, "delete")
    if not to_set and not to_delete:
        raise ApiError(400, "MISSING_FIELD", "give configs to 'set' or 'delete'")
    applied = await request.app[CLUSTER].alter_configs(group_id, to_set, to_delete)
    return json_response({"group_id": group_id, "set": to_set, "deleted": to_delete, "applied": applied})


async def dlq_replay(request: web.Request) -> web.Response:
    _require_writable(request)
    topic = check_topic(request.match_info["topic"])
    body = await _body(request)
    replay_all = body.get("all") is True
    partition = _field(body, "partition", int, required=not replay_all)
    offset = _field(body, "offset", int, required=not replay_all)
    if replay_all and (partition is not None or offset is not None):
        raise ApiError(400, "INVALID_REQUEST", "give either 'all': true or a partition and an offset")
    if not replay_all and (partition < 0 or offset < 0):
        raise ApiError(400, "INVALID_FIELD", "partition and offset must be >= 0")
    start = _offsets(body, "from") if replay_all else None
    if not replay_all and body.get("from") is not None:
        raise ApiError(400, "INVALID_REQUEST", "'from' goes with 'all': true")
    result = await request.app[DLQ].replay(topic, partition=partition, offset=offset, start=start)
    return json_response(result)


def _offsets(body: Mapping[str, Any], name: str) -> dict[int, int] | None:
    """{"0": 120, "3": 7}: partition -> offset (a capped replay's ``next_offset``)."""
    value = _field(body, name, dict, required=False)
    if value is None:
        return None
    out: dict[int, int] = {}
    for p, o in value.items():
        if not (
            isinstance(p, str) and p.isdigit() and isinstance(o, int) and not isinstance(o, bool) and o >= 0
        ):
            raise ApiError(400, "INVALID_FIELD", f"{name!r} must map partition numbers to offsets (>= 0)")
        out[int(p)] = o
    return out


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/meta", meta)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/groups", groups)
    app.router.add_get("/api/groups/{group}", group)
    app.router.add_post("/api/groups/{group}/reset", reset_offsets)
    app.router.add_post("/api/groups/{group}/delete-offsets", delete_offsets)
    app.router.add_post("/api/groups/{group}/delete", delete_group)
    app.router.add_post("/api/groups/{group}/config", alter_config)
    app.router.add_get("/api/processes", processes)
    app.router.add_get("/api/errors", errors)
    app.router.add_get("/api/topics", topics)
    app.router.add_get("/api/dlq/{topic}", dlq_browse)
    app.router.add_post("/api/dlq/{topic}/replay", dlq_replay)
