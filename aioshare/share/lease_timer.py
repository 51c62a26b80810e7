"""The one timer task that expires acquisition locks.

However many records are held, there is one task: it sleeps until the lease table's
earliest deadline (or until told that an earlier one appeared) and then sweeps every
lease whose deadline passed.  No task or ``call_later`` per record.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from aioshare.share.leases import ExpiredRange, LeaseTable

__all__ = ["LeaseTimer"]


class LeaseTimer:
    def __init__(self, leases: LeaseTable, on_expired: Callable[[list[ExpiredRange]], None]) -> None:
        self._leases = leases
        self._on_expired = on_expired
        self._changed = asyncio.Event()

    def reschedule(self) -> None:
        """Deadlines were added or moved: re-read the earliest one."""
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before reading the table, so a reschedule() after this point is seen.
            self._changed.clear()
            now = loop.time()
            deadline = self._leases.next_deadline()
            if deadline is not None and deadline <= now:
                expired = self._leases.expire(now)
                if expired:
                    self._on_expired(expired)
                continue
            timeout = None if deadline is None or math.isinf(deadline) else deadline - now
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
