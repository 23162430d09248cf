"""Progress of a run: a tqdm bar on a terminal, plain log lines elsewhere (nohup, pipes, Slurm logs).

Owns :class:`RunProgress`. The lines go to the ``carabm`` logger, so ``-q`` silences them
and a batch log reads ``carabm: day 3.0/14 (21 %), 2.1 ms/step, ETA 4 min``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("carabm")

HOURS_PER_DAY = 24.0
#: a plain progress line every this fraction of the run ...
LINE_EVERY_FRACTION = 0.05
#: ... or every this many simulated hours, whichever comes first
LINE_EVERY_H = 24.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``4 min``, ``1 h 05 min``: how long, as a person says it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def simulated_time(step: int, total: int, dt_h: float) -> str:
    """``day 3.0/14``, or ``hour 6.0/12`` for runs shorter than two days."""
    if total * dt_h < 2 * HOURS_PER_DAY:
        return f"hour {step * dt_h:.1f}/{total * dt_h:g}"
    return f"day {step * dt_h / HOURS_PER_DAY:.1f}/{total * dt_h / HOURS_PER_DAY:g}"


def progress_line(step: int, total: int, dt_h: float, first: int, elapsed_s: float) -> str:
    """``day 3.0/14 (21 %), 2.1 ms/step, ETA 4 min`` after ``step`` of ``total`` steps (timed since step ``first``)."""
    done = step - first
    percent = 100.0 * step / total if total else 100.0
    text = f"{simulated_time(step, total, dt_h)} ({percent:.0f} %)"
    if done > 0 and elapsed_s > 0:
        per_step = elapsed_s / done
        text += f", {per_step * 1e3:.1f} ms/step"
        if step < total:
            text += f", ETA {format_duration(per_step * (total - step))}"
    return text


class RunProgress:
    """Progress of ``total`` steps of ``dt_h`` hours, starting after step ``initial``.

    ``enabled``: True, False or None (auto: on). ``bar``: True draws a tqdm bar, False
    writes log lines, None (auto) a bar when ``stream`` is a terminal, or when ``enabled``
    is True and no handler would show the lines (a notebook without logging set up). Use
    as a context manager and call :meth:`update` once per step.
    """

    def __init__(self, total: int, initial: int, dt_h: float, enabled: bool | None = None, bar: bool | None = None,
                 stream: Any = None, label: str = "") -> None:  # fmt: skip
        self.total = int(total)
        self.step = self.first = min(int(initial), self.total)
        self.dt_h = float(dt_h)
        self.label = label
        self.enabled = enabled is not False and self.total > self.first
        stream = stream if stream is not None else sys.stderr
        if bar is None:  # asked for (enabled=True) where no log shows the lines, as in a notebook: a bar too
            bar = bool(getattr(stream, "isatty", lambda: False)()) or (enabled is True and not log.hasHandlers())
        self._bar = None
        if self.enabled and bar:
            from tqdm import tqdm  # noqa: PLC0415

            self._bar = tqdm(total=self.total, initial=self.first, unit="step", desc=label or "carabm", file=stream,
                             dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps{postfix} [{elapsed}<{remaining}]")  # fmt: skip
            self._bar.set_postfix_str(self._day_text(), refresh=False)
        every_fraction = max(1, round(LINE_EVERY_FRACTION * self.total))
        every_h = max(1, round(LINE_EVERY_H / self.dt_h)) if self.dt_h > 0 else every_fraction
        self.line_every = min(every_fraction, every_h)
        # the clock starts after the first step, which may include compiling (numba, CUDA): a fair ETA
        self._clock: tuple[int, float] | None = None

    def _day_text(self) -> str:
        return simulated_time(self.step, self.total, self.dt_h)

    def update(self, steps: int = 1) -> None:
        """Record ``steps`` more steps; redraw the bar or write a line when one is due."""
        before = self.step
        self.step = min(self.total, self.step + steps)
        if not self.enabled:
            return
        if self._clock is None:
            self._clock = (self.step, time.perf_counter())
        if self._bar is not None:
            self._bar.set_postfix_str(self._day_text(), refresh=False)
            self._bar.update(self.step - before)
        elif self.step // self.line_every > before // self.line_every or self.step == self.total:
            clock_step, clock_s = self._clock
            text = progress_line(self.step, self.total, self.dt_h, clock_step, time.perf_counter() - clock_s)
            log.info("%s%s", f"{self.label}: " if self.label else "", text)

    def close(self) -> None:
        """Close the bar (lines need no closing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TqdmAwareHandler(logging.StreamHandler):
    """A stream handler that writes through ``tqdm.write`` so log lines do not tear a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        try:
            from tqdm import tqdm  # noqa: PLC0415

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


__all__ = ["RunProgress", "TqdmAwareHandler", "format_duration", "progress_line", "simulated_time"]
