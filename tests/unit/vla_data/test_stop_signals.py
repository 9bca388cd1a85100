"""SIGINT/SIGTERM during a replay: the first interrupts the playback only; none cuts the shutdown short."""

from __future__ import annotations

import os
import signal
import time

import pytest

from vla_data.stop_signals import Interrupted, StopSignals


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_interrupts_the_armed_playback_and_later_ones_are_only_noted(signum):
    before = signal.getsignal(signum)
    with StopSignals() as stop:
        with pytest.raises(Interrupted, match=f"interrupted by {signal.Signals(signum).name}"):
            with stop.armed():
                _signal_self(signum)
                pytest.fail("the signal did not interrupt the playback")
        _signal_self(signal.SIGTERM)  # during the shutdown: noted, nothing raised
        assert stop.received == signum
    assert signal.getsignal(signum) is before


def test_a_signal_before_the_playback_skips_it_and_one_outside_it_raises_nothing():
    with StopSignals() as stop:
        _signal_self(signal.SIGTERM)  # e.g. while the launcher starts the nodes
        assert stop.received == signal.SIGTERM
        with pytest.raises(Interrupted, match="SIGTERM"), stop.armed():
            pytest.fail("the playback ran after a stop signal")
