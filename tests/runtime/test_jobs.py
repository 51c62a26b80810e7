"""Jobs builders: grouping, order, sizing and the checks on user builders."""

from __future__ import annotations

from typing import Any

import pytest

from aioshare.protocol.errors import ConfigError
from aioshare.runtime import custom, per_batch, per_key, per_message, per_partition
from aioshare.runtime.jobs import make_jobs_builder

from .kit import message_at


def shape(jobs: list[Any]) -> list[tuple[Any, list[tuple[str, int, int]]]]:
    return [(j.key, [(m.topic, m.partition, m.offset) for m in j.messages]) for j in jobs]


def test_per_message_and_per_batch() -> None:
    msgs = [message_at("a", 0), message_at("b", 0), message_at("a", 1), message_at("a", 2)]
    assert shape(per_message().build(msgs)) == [
        (None, [t]) for t in [("a", 0, 0), ("b", 0, 0), ("a", 0, 1), ("a", 0, 2)]
    ]
    assert per_message().records_per_job == 1 and not per_message().batch
    builder = per_batch(2)
    assert builder.batch and builder.records_per_job == 2
    assert shape(builder.build(msgs)) == [
        (None, [("a", 0, 0), ("a", 0, 1)]),
        (None, [("a", 0, 2)]),
        (None, [("b", 0, 0)]),
    ]


def test_per_partition_sorts_by_offset_and_keys_by_partition() -> None:
    msgs = [message_at("a", 5, 1), message_at("a", 3, 1), message_at("a", 0, 0), message_at("a", 4, 1)]
    assert shape(per_partition(2).build(msgs)) == [
        (("a", 1), [("a", 1, 3), ("a", 1, 4)]),
        (("a", 1), [("a", 1, 5)]),
        (("a", 0), [("a", 0, 0)]),
    ]


def test_per_key_groups_by_topic_and_key_and_frees_keyless_records() -> None:
    msgs = [
        message_at("a", 0, key=b"k"),
        message_at("a", 1),
        message_at("b", 0, key=b"k"),
        message_at("a", 2, key=b"k"),
    ]
    assert shape(per_key(5).build(msgs)) == [
        (None, [("a", 0, 1)]),
        (("key", "a", b"k"), [("a", 0, 0), ("a", 0, 2)]),
        (("key", "b", b"k"), [("b", 0, 0)]),
    ]


def test_custom_builder_output_is_checked() -> None:
    a, b, c = message_at("a", 0), message_at("a", 1), message_at("b", 0)
    mixed = custom(lambda ms: [ms], max_messages_per_job=3)
    assert shape(mixed.build([a, b, c])) == [(None, [("a", 0, 0), ("a", 0, 1)]), (None, [("b", 0, 0)])]
    forgetful = custom(lambda ms: [[ms[0]]])
    assert shape(forgetful.build([a, b])) == [(None, [("a", 0, 0)]), (None, [("a", 0, 1)])]
    with pytest.raises(ValueError, match="two jobs"):
        custom(lambda ms: [ms, ms]).build([a])
    with pytest.raises(ValueError, match="not given"):
        custom(lambda ms: [[c]]).build([a])


def test_make_jobs_builder_from_route_arguments() -> None:
    assert make_jobs_builder(None).records_per_job == 1
    assert make_jobs_builder("per_batch").records_per_job == 100
    assert make_jobs_builder("per_key").records_per_job == 10
    assert make_jobs_builder("per_partition", 7).records_per_job == 7
    assert make_jobs_builder(per_batch(3)).records_per_job == 3
    assert make_jobs_builder(lambda ms: [ms], 4).records_per_job == 4
    with pytest.raises(ConfigError):
        make_jobs_builder("per_message", 5)
    with pytest.raises(ConfigError):
        make_jobs_builder(per_batch(3), 5)
    with pytest.raises(ConfigError):
        make_jobs_builder("per_batch", 0)
    with pytest.raises(ConfigError):
        make_jobs_builder(42)
