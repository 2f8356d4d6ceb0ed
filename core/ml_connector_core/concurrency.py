"""HTTP calls in worker threads, their results taken back in order on the main thread.

With a few hundred milliseconds per request, one call at a time makes a backlog of thousands
take an hour. So the plugins run their calls in a bounded pool of threads (each plugin's
`max_requests_in_flight`), and everything else stays on the main thread, in the order the
calls were started: the ledger entries, the run's counts, the STATE, the records' order, the
decision to stop the run. A worker only calls the system and returns what it heard (core's
BaswareClient is safe across threads: one token refresh at a time, and one throttle for the
whole client, so a 429 or 503 slows every thread down).

Threads, not asyncio: the SDK's streams are generators driven by its own synchronous loop,
and core's client is `requests`; a call spends its time waiting on the network, when Python
releases the GIL. With one in flight there is no thread at all: each call runs where it is
started and is settled at once, exactly as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class InOrder(Generic[T]):
    """At most `window` calls running; each one's result handed to `settle` on the calling
    thread, in the order the calls were started.

    `settle` may raise (a failure that stops the run): then no further call is started by
    `submit`, and the caller settles what is still running with `drain(raise_first=False)`
    before it lets the error go on.
    """

    def __init__(self, pool: ThreadPoolExecutor | None, window: int,
                 settle: Callable[[T], None]) -> None:
        self._pool = pool if window > 1 else None
        self._window = max(1, window)
        self._settle = settle
        self._pending: deque[Future[T]] = deque()

    def submit(self, call: Callable[[], T]) -> None:
        """Start `call` (in a worker, or here with a window of 1), first settling the oldest
        calls until fewer than `window` are in flight."""
        if self._pool is None:
            self._settle(call())
            return
        while len(self._pending) >= self._window:
            self._settle_oldest()
        self._pending.append(self._pool.submit(call))

    def done(self, result: T) -> None:
        """A result known without a call: settled in its turn, after those started before."""
        if self._pool is None and not self._pending:
            self._settle(result)
            return
        future: Future[T] = Future()
        future.set_result(result)
        self._pending.append(future)

    def drain(self, *, raise_first: bool = True) -> None:
        """Settle every call still in flight, in order. A failure does not stop the others
        from being settled (their ledger entries written); the first one is raised at the end
        unless `raise_first` is off (the caller is already failing)."""
        first: BaseException | None = None
        while self._pending:
            try:
                self._settle_oldest()
            except Exception as exc:  # noqa: BLE001 - kept, raised once all are settled
                first = first or exc
        if first is not None and raise_first:
            raise first

    def __len__(self) -> int:
        return len(self._pending)

    def _settle_oldest(self) -> None:
        future = self._pending.popleft()
        self._settle(future.result())  # a worker returns its failure, it does not raise
