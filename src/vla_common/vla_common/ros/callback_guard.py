"""A last-resort guard for ROS callbacks: an unexpected exception is counted and logged, not fatal.

rclpy lets an exception raised in a subscription or timer callback out of ``executor.spin()``, and
the node exits (the launcher then stops the whole graph). Every callback validates its input first
and drops a bad message with a reason (a per-kind counter, /diagnostics, a throttled log); this guard
is only for what validation did not foresee, i.e. a bug. It counts the exception per callback, puts
it in /diagnostics (``count.unexpected_error.<callback>`` and an ERROR status) and logs it with its
traceback, at most once per ``log_interval_s`` per callback, and the node goes on.

    guard = CallbackGuard(self.get_logger(), self.diag)
    self.create_subscription(String, "/vla/episode", guard.wrap("episode", self._on_episode), qos)
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from vla_common.ros.node_runtime import ERROR, WARN

COUNTER_PREFIX = "unexpected_error"
LOG_INTERVAL_S = 5.0  # one traceback per callback per interval: a bug firing at 30 Hz must not flood logs


class _Logger(Protocol):
    def error(self, message: str) -> Any: ...


class _Diagnostics(Protocol):
    def count(self, key: str, n: int = 1) -> None: ...

    def report(self, level: int, message: str, log: bool = True) -> None: ...

    def note(self, key: str, text: str) -> None: ...


class LogThrottle:
    """Per-key throttle for log lines: ``due(key)`` is true at most once per ``interval_s`` per key,
    and then returns how many calls were held back since the last line (thread-safe: callbacks may
    run on several executor threads)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def due(self, key: str) -> int | None:
        """None when ``key`` logged within the interval (counted as held back); else the held count."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


class CallbackGuard:
    """Wraps callbacks so that an exception escaping one is counted and logged instead of raised."""

    def __init__(
        self,
        logger: _Logger,
        diag: _Diagnostics | None = None,
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._diag = diag
        self._throttle = LogThrottle(log_interval_s, clock)
        self._lock = threading.Lock()  # callbacks may run on several executor threads
        self.counts: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Unexpected exceptions caught so far, over all callbacks."""
        return sum(self.counts.values())

    def wrap(self, name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``callback`` with the guard around it; ``name`` names it in counters and logs."""

        @functools.wraps(callback)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the point of the guard; KeyboardInterrupt passes
                self.caught(name, exc)
                return None

        return guarded

    def caught(self, name: str, exc: BaseException) -> None:
        """Count, report and (throttled) log ``exc`` raised by callback ``name``."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            count = self.counts[name]
        log = self._throttle.due(name) is not None
        message = f"callback '{name}' raised {type(exc).__name__}: {exc} (unexpected, #{count}); node goes on"
        if self._diag is not None:
            self._diag.count(f"{COUNTER_PREFIX}.{name}")
            self._diag.report(ERROR, message, log=False)
        if log:
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self._logger.error(f"{message}\n{trace}")


LAST_REASON_PREFIX = "last_rejected"  # /diagnostics key of the last reason a kind was dropped
REJECT_LOG_INTERVAL_S = 5.0  # one log line per message kind per interval; every drop is counted


class _WarnLogger(Protocol):
    def warning(self, message: str) -> Any: ...


class MessageRejections:
    """What a callback does with a message that failed validation: drop it and say why.

    Counts the drop per kind (``count.rejected.<kind>`` in /diagnostics), keeps the last reason per
    kind (``last_rejected.<kind>``), makes the reason the node's current status (WARN: ``dropped
    <kind>: <reason>``) and logs it at most once per ``log_interval_s`` per kind.
    """

    def __init__(
        self,
        logger: _WarnLogger,
        diag: _Diagnostics,
        log_interval_s: float = REJECT_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._diag = diag
        self._throttle = LogThrottle(log_interval_s, clock)

    def drop(self, kind: str, reason: str) -> None:
        """Record that a message of ``kind`` was dropped because of ``reason``."""
        self._diag.count(f"rejected.{kind}")
        self._diag.note(f"{LAST_REASON_PREFIX}.{kind}", reason)
        self._diag.report(WARN, f"dropped {kind}: {reason}", log=False)
        suppressed = self._throttle.due(kind)
        if suppressed is None:
            return
        more = f" ({suppressed} more dropped since the last report)" if suppressed else ""
        self._logger.warning(f"dropped {kind}: {reason}{more}")
