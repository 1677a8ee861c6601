"""First come, first served admission to a worker's synchronous request work.

Under ASGI every request runs its middleware and sync view in a thread of its own, and
Python runs one thread at a time (the GIL), handing it round every few milliseconds. When 25
chat sends reach one worker at the same instant, each needs ~8 ms of CPU before its model
call; interleaved, all of them finish at about the same time, ~200 ms later, so the typical
participant waits as long as the last one. Admitted in arrival order, a few at a time, the
first is answered after ~8 ms and the median after half the total: the same work, the same
throughput, half the median wait. A WSGI server gets this from its fixed thread pool.

A request that holds its place longer than `budget_s` (a slow page, an upload, a database
wait) gives it up to the next in line and carries on unadmitted, as every request did before,
so nothing slow can hold the queue: whatever the requests do, the queue drains at least `limit`
requests per `budget_s` per worker (40 a second at the defaults, 2 per 50 ms). Requests that
are slow because they wait (not compute) and arrive faster than that queue behind one another
instead of all waiting at once; raise the limit or lower the budget for such a load.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque


class Admission:
    """At most `limit` requests of one event loop in their synchronous part at once, in
    arrival order; each place is handed back when the request's synchronous part returns or
    after `budget_s`, whichever comes first."""

    def __init__(self, limit: int, budget_s: float) -> None:
        if limit < 1:
            raise ValueError("REQUEST_ADMISSION_LIMIT must be at least 1")
        self.limit = limit
        self.budget_s = budget_s
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    def _queue(self) -> _Queue:
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _Queue(self.limit)
        return queue

    async def run(self, func, *args):
        """Await func(*args) once admitted."""
        queue = self._queue()
        await queue.enter()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                queue.leave()

        timer = asyncio.get_running_loop().call_later(self.budget_s, give_back)
        try:
            return await func(*args)
        finally:
            timer.cancel()
            give_back()


class _Queue:
    """One event loop's places and the requests waiting for one (futures, oldest first)."""

    __slots__ = ("free", "waiting")

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiting: deque[asyncio.Future] = deque()

    async def enter(self) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        place = asyncio.get_running_loop().create_future()
        self.waiting.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self.leave()  # handed a place in the same moment the request was cancelled
            else:
                with contextlib.suppress(ValueError):  # leave() may have dropped it already
                    self.waiting.remove(place)
            raise

    def leave(self) -> None:
        while self.waiting:
            place = self.waiting.popleft()
            if not place.done():
                place.set_result(None)  # the place passes straight to the next in line
                return
        self.free += 1
