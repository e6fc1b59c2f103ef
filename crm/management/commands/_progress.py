"""A progress line for long commands, on stderr so stdout stays machine-readable."""

import sys
import time


class ProgressLine:
    def __init__(self, stream=None, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.started = time.monotonic()

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        percent = 100 * done / total if total else 100
        rate = done / max(time.monotonic() - self.started, 1e-6)
        line = (
            f"\r{self.label} {done:,}/{total:,} rows ({percent:5.1f}%) {rate:,.0f} rows/s {extra}"
        )
        self.stream.write(line)
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
