"""Keeping Python's cyclic garbage collector off a long-running server's long-lived objects.

A gateway keeps one object per pending task for as long as it runs. With 100,000 pending
tasks, each full collection took 100 to 170 ms of the event loop, several times a second under
load, and found nothing to free. The pull_task benchmark's p99 was that pause. `settle()`
collects once, then freezes the survivors (gc.freeze): later collections skip them. Freezing
is undone and redone every FULL_COLLECTION_INTERVAL_S, so cyclic garbage made by objects that
were alive at a freeze is collected then, not kept for good.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

FULL_COLLECTION_INTERVAL_S = 600.0


def settle() -> None:
    """Collect everything once, then leave the surviving objects out of later collections."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug("heap settled in %.1f ms, %d objects frozen", (time.perf_counter() - started) * 1000,
              gc.get_freeze_count())


async def settle_periodically(interval_s: float = FULL_COLLECTION_INTERVAL_S) -> None:
    """Run `settle()` every `interval_s` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        settle()
