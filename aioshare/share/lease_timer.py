"""The one timer task for every deadline of held records.

However many records are held, there is one task: it sleeps until the lease table's
earliest deadline (or until told that an earlier one appeared) and then sweeps every
lease whose deadline passed, and hands the table's timers that fell due (keep-alive
renewals and timed acknowledgements, see ``AckTracker.timers_due``) to ``on_due``.
No task or ``call_later`` per record.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from aioshare.share.leases import ExpiredRange, LeaseTable, Timer

__all__ = ["LeaseTimer"]


class LeaseTimer:
    def __init__(
        self,
        leases: LeaseTable,
        on_expired: Callable[[list[ExpiredRange]], None],
        on_due: Callable[[list[Timer], float], None] | None = None,
    ) -> None:
        self._leases = leases
        self._on_expired = on_expired
        self._on_due = on_due
        self._changed = asyncio.Event()
        leases.wake = self.reschedule  # a timer scheduled earlier than the earliest deadline

    def reschedule(self) -> None:
        """Deadlines were added or moved: re-read the earliest one."""
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        leases = self._leases
        while True:
            # Cleared before reading the table, so a reschedule() after this point is seen.
            self._changed.clear()
            now = loop.time()
            deadline = leases.next_deadline()
            if deadline is not None and deadline <= now:
                expired = leases.expire(now)
                fired = leases.take_fired()
                if expired:
                    self._on_expired(expired)
                if fired and self._on_due is not None:
                    # After the expiries: a timer of a record whose lock ran out in the same
                    # sweep finds it gone.
                    self._on_due(fired, now)
                continue
            timeout = None if deadline is None or math.isinf(deadline) else deadline - now
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
