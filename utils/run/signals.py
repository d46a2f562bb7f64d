"""SIGINT/SIGTERM as a clean stop (see README, "Failure and recovery").

    with StopSignals() as stop:       # installs the handlers; restores the old ones on exit
        setup()                       # a signal here raises KeyboardInterrupt at once
        with stop.deferred():         # a signal here only sets stop.received ...
            for step in loop:
                if stop.received:     # ... and the loop stops at the next step
                    break

A second signal while deferred stops at once. ``received`` keeps the last signal, so the
caller can exit with 128 + its number (130 for SIGINT, 143 for SIGTERM), as a shell would.
"""
import contextlib
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.received = None
        self._previous = {}

    def __enter__(self):
        self._previous = {sig: signal.getsignal(sig) for sig in self.signals}
        self._install(self._stop_now)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        return False

    @contextlib.contextmanager
    def deferred(self):
        """Signals only set ``received`` inside this block (the first of them)."""
        self._install(self._defer)
        try:
            yield self
        finally:
            self._install(self._stop_now)

    def _install(self, handler):
        for sig in self.signals:
            signal.signal(sig, handler)

    def _defer(self, signum, _frame):
        self.received = signum
        signal.signal(signum, self._stop_now)

    def _stop_now(self, signum, _frame):
        self.received = signum
        raise KeyboardInterrupt(signum)
