"""Stop signals are seen through the wakeup fd, even while another thread holds the process."""

from __future__ import annotations

import os
import signal
import threading
import time

from flightsrv.signals import StopSignals


def test_a_signal_is_seen_while_another_thread_blocks_in_native_code() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        busy = threading.Thread(target=time.sleep, args=(2,), daemon=True)  # no bytecode runs
        busy.start()
        assert signals.wait(0.05) is None
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        assert signals.wait(5) == signal.SIGTERM
        assert time.monotonic() - started < 1
        os.kill(os.getpid(), signal.SIGINT)  # a second one: the caller leaves at once
        assert signals.wait(1) == signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers given back
