"""Administering share groups: listing, describing, offsets, group configs, and topics.

Everything goes through `ShareAdmin`:

    async with ShareAdmin("localhost:9092") as admin:
        groups = await admin.list_share_groups()

See docs/admin.md.
"""

from aioshare.admin.share_admin import GROUP_RESOURCE, ShareAdmin
from aioshare.admin.types import (
    ConfigEntry,
    ConfigSource,
    PartitionOffsetInfo,
    ResetTarget,
    ShareGroupDescription,
    ShareGroupListing,
    ShareMemberDescription,
    TopicListing,
    TopicPartition,
)

__all__ = [
    "GROUP_RESOURCE",
    "ConfigEntry",
    "ConfigSource",
    "PartitionOffsetInfo",
    "ResetTarget",
    "ShareAdmin",
    "ShareGroupDescription",
    "ShareGroupListing",
    "ShareMemberDescription",
    "TopicListing",
    "TopicPartition",
]
