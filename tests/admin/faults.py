"""Scripted faults in front of an embedded broker's own handlers: the admin tests' one harness.

The embedded broker answers every admin API with Kafka's semantics (the share groups, members,
offsets and configs the tests read are the broker's own). What it does not do by itself is
misbehave on cue, so `Faults` wraps each of its API handlers, the way `api_versions` caps them
to a Kafka release, and lets a test

* read what the admin sent: API, node, version and request body (`sent`);
* have the admin's next requests of an API refused with an error code (`refuse`), without the
  broker seeing them, or answered by the broker and then altered (`rewrite`);
* serve an API at lower versions only (`cap`), as an older Kafka advertises it.

Faults hit only requests from the admin's client id, so members of a group (ShareConsumer,
client id "aioshare") keep heartbeating undisturbed. Everything that changes the broker runs
on its own loop (`ThreadedBroker.acall`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.server import Handler, RequestContext
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.messages import (
    CreateTopicsResponse,
    DeleteGroupsResponse,
    DescribeShareGroupOffsetsResponse,
    FindCoordinatorResponse,
    ListGroupsResponse,
    ListOffsetsResponse,
    ShareGroupDescribeResponse,
)
from aioshare.testing import ThreadedBroker

ADMIN_CLIENT_ID = "aioshare-admin"  # ShareAdmin's default, and the CLI's

LIST_OFFSETS, METADATA, FIND_COORDINATOR, LIST_GROUPS, CREATE_TOPICS = 2, 3, 10, 16, 19
DESCRIBE_CONFIGS, DELETE_GROUPS, INCREMENTAL_ALTER_CONFIGS = 32, 42, 44
SHARE_GROUP_DESCRIBE, DESCRIBE_SHARE_GROUP_OFFSETS, ALTER_SHARE_GROUP_OFFSETS = 77, 90, 91

Rewrite = Callable[[Any, Any], ApiMessage]
"""(request, the broker's answer) -> the answer the client gets."""

_Step = Callable[[RequestContext, Any, Handler], Awaitable[ApiMessage | None]]


@dataclass(frozen=True)
class Sent:
    """One request the admin sent, as the broker received it."""

    node_id: int
    version: int
    body: Any  # the request class of the API; Any so tests can read its fields


class Faults:
    """Scripted answers for the admin's requests to one ThreadedBroker; see the module docstring."""

    def __init__(self, broker: ThreadedBroker, client_id: str = ADMIN_CLIENT_ID) -> None:
        self._broker = broker
        self._client_id = client_id
        self._sent: dict[int, list[Sent]] = {}
        # Per API key, the steps the next requests get, in order; `_forever` answers once they run out.
        self._steps: dict[int, list[_Step]] = {}
        self._forever: dict[int, _Step] = {}

    async def install(self) -> None:
        """Puts the recorder and the scripts in front of every API the broker serves."""

        async def wrap(broker: EmbeddedBroker) -> None:
            registry = broker.registry
            for api_key, (low, high) in registry.versions().items():
                real = registry.lookup(api_key, high)
                assert real is not None
                registry.register(api_key, self._serving(api_key, real), min_version=low, max_version=high)

        await self._broker.acall(wrap)

    def sent(self, api_key: int) -> list[Sent]:
        return list(self._sent.get(api_key, []))

    async def refuse(self, api_key: int, code: int, times: int | None = 1) -> None:
        """The admin's next `times` requests of `api_key` (every one if None) get `code` for
        each group, partition or coordinator key they ask about; the broker never sees them."""

        async def step(context: RequestContext, request: Any, real: Handler) -> ApiMessage:
            return refusal(api_key, context.api_version, request, code)

        await self._script(api_key, step, times)

    async def rewrite(self, api_key: int, change: Rewrite, times: int | None = 1) -> None:
        """The broker answers the admin's next `times` requests of `api_key` (every one if None),
        and `change(request, answer)` is what the admin gets."""

        async def step(context: RequestContext, request: Any, real: Handler) -> ApiMessage:
            answer = await real(context, request)
            assert answer is not None
            return change(request, answer)

        await self._script(api_key, step, times)

    async def cap(self, api_key: int, max_version: int) -> None:
        """Serve `api_key` up to `max_version` only (ApiVersions advertises that), as older Kafka."""

        async def lower(broker: EmbeddedBroker) -> None:
            registry = broker.registry
            served = registry.version_range(api_key)
            assert served is not None, f"the broker does not serve API key {api_key}"
            handler = registry.lookup(api_key, served[1])
            assert handler is not None
            registry.register(api_key, handler, min_version=served[0], max_version=max_version)

        await self._broker.acall(lower)

    async def _script(self, api_key: int, step: _Step, times: int | None) -> None:
        async def add(_broker: EmbeddedBroker) -> None:
            if times is None:
                self._forever[api_key] = step
            else:
                self._steps.setdefault(api_key, []).extend([step] * times)

        await self._broker.acall(add)

    def _serving(self, api_key: int, real: Handler) -> Handler:
        async def serve(context: RequestContext, request: Any) -> ApiMessage | None:
            if context.client_id != self._client_id:
                return await real(context, request)
            self._sent.setdefault(api_key, []).append(Sent(context.node_id, context.api_version, request))
            steps = self._steps.get(api_key)
            step = steps.pop(0) if steps else self._forever.get(api_key)
            if step is None:
                return await real(context, request)
            return await step(context, request, real)

        return serve


def refusal(api_key: int, version: int, request: Any, code: int) -> ApiMessage:
    """An answer of API `api_key` to `request` that gives `code` wherever the API has an error."""
    if api_key == LIST_GROUPS:
        return ListGroupsResponse(error_code=code)
    if api_key == FIND_COORDINATOR:
        if version >= 4:
            Coordinator = FindCoordinatorResponse.Coordinator
            return FindCoordinatorResponse(
                coordinators=[
                    Coordinator(key=key, node_id=-1, host="", port=-1, error_code=code)
                    for key in request.coordinator_keys
                ]
            )
        return FindCoordinatorResponse(error_code=code, node_id=-1, host="", port=-1)
    if api_key == SHARE_GROUP_DESCRIBE:
        Described = ShareGroupDescribeResponse.DescribedGroup
        return ShareGroupDescribeResponse(
            groups=[Described(group_id=group, error_code=code) for group in request.group_ids]
        )
    if api_key == DESCRIBE_SHARE_GROUP_OFFSETS:
        Group = DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseGroup
        return DescribeShareGroupOffsetsResponse(
            groups=[Group(group_id=group.group_id, error_code=code) for group in request.groups]
        )
    if api_key == DELETE_GROUPS:
        Deletable = DeleteGroupsResponse.DeletableGroupResult
        return DeleteGroupsResponse(
            results=[Deletable(group_id=group, error_code=code) for group in request.groups_names]
        )
    if api_key == CREATE_TOPICS:
        Created = CreateTopicsResponse.CreatableTopicResult
        return CreateTopicsResponse(
            topics=[Created(name=topic.name, error_code=code) for topic in request.topics]
        )
    if api_key == LIST_OFFSETS:
        R = ListOffsetsResponse
        return R(
            topics=[
                R.ListOffsetsTopicResponse(
                    name=topic.name,
                    partitions=[
                        R.ListOffsetsPartitionResponse(partition_index=p.partition_index, error_code=code)
                        for p in topic.partitions
                    ],
                )
                for topic in request.topics
            ]
        )
    raise ValueError(f"no scripted refusal for API key {api_key}")
