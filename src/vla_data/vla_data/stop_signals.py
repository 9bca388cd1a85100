"""SIGINT and SIGTERM as a clean stop: the first one interrupts the playback, none cuts the shutdown short.

``vla-stack replay`` must, on Ctrl-C or ``timeout``/``kill``, stop every node, close the output bag
with its metadata and write the report, without a traceback. :class:`StopSignals` installs handlers
for both signals (in the main thread; elsewhere it does nothing). The first signal raises
:class:`Interrupted` in the main thread, but only inside :meth:`StopSignals.armed` (the playback);
outside it, and for every later signal, the signal is only noted, so stopping the nodes, closing the
bag and writing the report always run to the end.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(RuntimeError):
    """A stop signal arrived during the playback."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class StopSignals:
    """Context manager: SIGINT/SIGTERM handlers while the run lasts, the previous ones restored after."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal, if one came
        self._armed = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            return  # already stopping: let the shutdown finish
        self.received = signum
        if self._armed:
            self._armed = False
            raise Interrupted(signum)

    @contextmanager
    def armed(self) -> Iterator[None]:
        """Inside: the first stop signal raises Interrupted (at once if one came before)."""
        if self.received is not None:
            raise Interrupted(self.received)
        self._armed = True
        try:
            yield
        finally:
            self._armed = False
