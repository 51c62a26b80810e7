"""The one rule for tests that need real Kafka: skip with what to install, except in CI, where it fails.

CI (``CI`` set, as every CI service sets it) must never pass by skipping the real-Kafka suite, so a
missing JDK, Maven or a broker that will not start fails the test there; on a laptop without Java
the test is skipped with one line saying what to install.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import pytest

from aioshare.testing.kafka.maven import DEFAULT_KAFKA_VERSION, KafkaUnavailable, kafka_classpath

__all__ = ["in_ci", "require", "require_kafka"]

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(what: Callable[[], T]) -> T:
    """``what()``, or skip (fail under CI) when it raises ``KafkaUnavailable``."""
    try:
        return what()
    except KafkaUnavailable as exc:
        if in_ci():
            pytest.fail(f"real Kafka is required under CI and unavailable: {exc}", pytrace=False)
        pytest.skip(f"real Kafka unavailable (install a JDK >= 17 and Maven to run these): {exc}")


def require_kafka(version: str = DEFAULT_KAFKA_VERSION) -> None:
    """Skip (fail under CI) unless Kafka ``version``'s jars can be had."""
    require(lambda: kafka_classpath(version))
