"""Testing aioshare applications: an embedded broker for any test, running an App until its
records are handled, and assertions on what became of each record.

The pytest fixtures (``aioshare_broker``, ``aioshare_topic``, ``aioshare_produce``,
``aioshare_app`` ...) come from ``aioshare.testing.plugin``, which pytest loads by itself once
aioshare is installed.  See docs/testing.md.
"""

from aioshare.testing.apps import embedded_for, prepare, run_app_until
from aioshare.testing.broker import TEST_BROKER_CONFIG, ThreadedBroker
from aioshare.testing.recorder import FINAL_KINDS, AckRecorder

__all__ = [
    "FINAL_KINDS",
    "TEST_BROKER_CONFIG",
    "AckRecorder",
    "ThreadedBroker",
    "embedded_for",
    "prepare",
    "run_app_until",
]
