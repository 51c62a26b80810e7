"""The aioshare runtime: route share-group records to async handlers with retries,
dead-lettering, lock renewal, instrumentation and graceful shutdown.

See docs/runtime.md.  The optional adapters live in ``aioshare.runtime.prometheus`` and
``aioshare.runtime.otel`` and import their packages only when used.
"""

from aioshare.runtime.app import App
from aioshare.runtime.broker_dlq import BrokerDeadLetterSink
from aioshare.runtime.clock import Clock, LoopClock, ManualClock
from aioshare.runtime.consumer import ConsumerFactory, ConsumerLike, ConsumerSpec, share_consumer
from aioshare.runtime.dlq import DeadLetterSink, KafkaDeadLetterSink, dead_letter_headers
from aioshare.runtime.events import Event, EventBus, EventKind, Subscription
from aioshare.runtime.jobs import Job, JobsBuilder, custom, per_batch, per_key, per_message, per_partition
from aioshare.runtime.message import Message
from aioshare.runtime.metrics import Metrics
from aioshare.runtime.retry import Backoff, Reject, Retry
from aioshare.runtime.route import Handler, Route

__all__ = [
    "App",
    "Backoff",
    "BrokerDeadLetterSink",
    "Clock",
    "ConsumerFactory",
    "ConsumerLike",
    "ConsumerSpec",
    "DeadLetterSink",
    "Event",
    "EventBus",
    "EventKind",
    "Handler",
    "Job",
    "JobsBuilder",
    "KafkaDeadLetterSink",
    "LoopClock",
    "ManualClock",
    "Message",
    "Metrics",
    "Reject",
    "Retry",
    "Route",
    "Subscription",
    "custom",
    "dead_letter_headers",
    "per_batch",
    "per_key",
    "per_message",
    "per_partition",
    "share_consumer",
]
