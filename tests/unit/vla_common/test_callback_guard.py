import pytest

from vla_common.ros.callback_guard import COUNTER_PREFIX, CallbackGuard, MessageRejections
from vla_common.ros.node_runtime import ERROR, WARN


class FakeLogger:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)


class FakeDiag:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.reports: list[tuple[int, str]] = []
        self.notes: dict[str, str] = {}

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def report(self, level: int, message: str, log: bool = True) -> None:
        self.reports.append((level, message))

    def note(self, key: str, text: str) -> None:
        self.notes[key] = text


def test_an_exception_is_counted_reported_and_logged_with_its_traceback():
    logger, diag = FakeLogger(), FakeDiag()
    guard = CallbackGuard(logger, diag)

    def buggy_callback(msg):
        return {}["missing"]

    guarded = guard.wrap("episode", buggy_callback)
    assert guarded("anything") is None  # did not raise
    assert guard.counts == {"episode": 1} and guard.total == 1
    assert diag.counters == {f"{COUNTER_PREFIX}.episode": 1}
    assert diag.reports[-1][0] == ERROR and "KeyError" in diag.reports[-1][1]
    assert len(logger.errors) == 1
    assert "Traceback" in logger.errors[0] and "buggy_callback" in logger.errors[0]


def test_a_callback_that_does_not_raise_passes_through_untouched():
    logger, diag = FakeLogger(), FakeDiag()
    guard = CallbackGuard(logger, diag)
    guarded = guard.wrap("image", lambda a, b=0: a + b)
    assert guarded(2, b=3) == 5
    assert guard.total == 0 and diag.counters == {} and logger.errors == []


def test_the_traceback_log_is_throttled_per_callback_but_every_exception_is_counted():
    now = [0.0]
    logger = FakeLogger()
    guard = CallbackGuard(logger, log_interval_s=5.0, clock=lambda: now[0])
    failing = guard.wrap("timer", lambda: 1 / 0)
    other = guard.wrap("other", lambda: [][1])
    for _ in range(10):
        failing()
    other()
    assert guard.counts == {"timer": 10, "other": 1}
    assert len(logger.errors) == 2  # one per callback within the interval
    now[0] = 5.0
    failing()
    assert len(logger.errors) == 3 and "#11" in logger.errors[-1]


def test_keyboard_interrupt_is_not_swallowed():
    guard = CallbackGuard(FakeLogger())

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guard.wrap("spin", interrupted)()
    assert guard.total == 0


class FakeWarnLogger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def test_rejections_count_every_drop_and_log_each_kind_throttled():
    now = [0.0]
    logger, diag = FakeWarnLogger(), FakeDiag()
    rejections = MessageRejections(logger, diag, log_interval_s=5.0, clock=lambda: now[0])
    for _ in range(3):
        rejections.drop("episode", "not JSON")
    rejections.drop("image.wrist", "data has 5 bytes")
    assert diag.counters == {"rejected.episode": 3, "rejected.image.wrist": 1}
    assert diag.reports[-1] == (WARN, "dropped image.wrist: data has 5 bytes")
    # the status message now names the image; the episode's reason is still there, under its kind
    assert diag.notes == {
        "last_rejected.episode": "not JSON",
        "last_rejected.image.wrist": "data has 5 bytes",
    }
    assert logger.warnings == ["dropped episode: not JSON", "dropped image.wrist: data has 5 bytes"]
    now[0] = 6.0
    rejections.drop("episode", "not JSON")
    assert logger.warnings[-1] == "dropped episode: not JSON (2 more dropped since the last report)"
