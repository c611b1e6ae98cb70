"""Progress on the terminal: a live line on a TTY, plain periodic log lines otherwise, and
the log lines themselves (`log_to_stderr`)."""

import logging
import sys
import time

log = logging.getLogger(__name__)


def format_seconds(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """Reports training progress.

    `tick` is called after every update; on a TTY it redraws one status line at most
    twice a second. `report` is called every `log_every` updates and writes a log line.

    Args:
        start_step: int, step the run starts (or resumes) at.
        total: int, last step.
        stream: where the live line goes. Defaults to stderr.
        seconds_left: the time budget left (train.max_minutes): the ETA is then the
            sooner of the last step and the budget's end; None: no budget.
    """

    def __init__(self, start_step, total, stream=None, seconds_left=None):
        self.start_step = start_step
        self.total = total
        self.seconds_left = seconds_left
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.perf_counter()
        self._drawn = 0.0

    def eta(self, step):
        done = step - self.start_step
        if done <= 0:
            return "?"
        elapsed = time.perf_counter() - self.started
        seconds = elapsed / done * (self.total - step)
        if self.seconds_left is not None:
            seconds = max(min(seconds, self.seconds_left - elapsed), 0)
        return format_seconds(seconds)

    def tick(self, step, loss, tokens_per_second):
        now = time.perf_counter()
        if not self.live or now - self._drawn < 0.5:
            return
        self._drawn = now
        self.stream.write(
            f"\rstep {step}/{self.total}  loss {loss:.4f}  "
            f"{tokens_per_second:,.0f} tokens/s  eta {self.eta(step)}   "
        )
        self.stream.flush()

    def report(self, message, *args):
        if self.live:
            self.stream.write("\r\033[K")  # clear the live line before the log line
        log.info(message, *args)

    def elapsed(self):
        return format_seconds(time.perf_counter() - self.started)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each message (tests swap it)."""

    stream = property(lambda self: sys.stderr, lambda self, value: None)


def log_to_stderr(logger):
    """Send `logger`'s INFO messages to stderr as `HH:MM:SS message` lines, once."""
    if logger.handlers:
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a library may have configured the root logger as well
