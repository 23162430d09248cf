"""Progress and logging as users see them: lines or a bar, -v/-q anywhere, carabm's messages only, compile notice."""

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from carabm.progress import RunProgress, format_duration

ROOT = Path(__file__).parents[1]
TINY = ["--set", "lattice.shape=[6, 12, 24]", "--set", "run.duration_h=1", "--set", "cells.bcell.initial_count=50",
        "--set", "cells.macrophage.initial_count=10", "--set", "cells.monocyte.initial_count=2",
        "--set", "cells.microglia.initial_count=5", "--backend", "numpy"]  # fmt: skip


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def carabm_log():
    logger = logging.getLogger("carabm")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_lines_every_five_percent_or_day(carabm_log):
    with RunProgress(total=96, initial=0, dt_h=1.0, bar=False) as progress:  # 4 days of 1-h steps
        for _ in range(96):
            progress.update()
    # 5 % of 96 steps rounds to 5 steps (< 24 h): one line per 5 steps, and the last step
    assert len(carabm_log) == 96 // 5 + 1
    assert re.fullmatch(r"day 0\.2/4 \(5 %\), [\d.]+ ms/step, ETA \d+ s", carabm_log[0]), carabm_log[0]
    assert re.fullmatch(r"day 4\.0/4 \(100 %\), [\d.]+ ms/step", carabm_log[-1]), carabm_log[-1]


def test_lines_of_a_long_run_come_every_simulated_day(carabm_log):
    with RunProgress(total=20 * 240, initial=10 * 240, dt_h=0.1, bar=False) as progress:  # resumed at day 10 of 20
        progress.update(240)
    assert carabm_log and carabm_log[0].startswith("day 11.0/20 (55 %)")


def test_a_bar_on_a_terminal_and_nothing_when_disabled(carabm_log):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with RunProgress(total=30, initial=0, dt_h=0.1, stream=screen) as progress:
        for _ in range(30):
            progress.update()
    assert "hour 3.0/3" in screen.getvalue() and "100%" in screen.getvalue()
    assert not carabm_log  # a bar, not lines
    quiet = Terminal()
    with RunProgress(total=30, initial=0, dt_h=0.1, enabled=False, stream=quiet) as progress:
        progress.update(30)
    assert quiet.getvalue() == "" and not carabm_log


def test_asked_for_progress_shows_a_bar_where_no_log_would_show_lines():
    logger = logging.getLogger("carabm")
    saved = logger.handlers[:], logger.propagate
    logger.handlers.clear()
    logger.propagate = False  # as in a notebook with no logging set up: lines would go nowhere
    try:
        notebook = io.StringIO()  # not a terminal
        with RunProgress(total=10, initial=0, dt_h=0.1, enabled=True, stream=notebook) as progress:
            progress.update(10)
        assert "10/10 steps" in notebook.getvalue()
        auto = io.StringIO()
        with RunProgress(total=10, initial=0, dt_h=0.1, stream=auto) as progress:  # auto stays quiet there
            progress.update(10)
        assert auto.getvalue() == ""
    finally:
        logger.handlers[:], logger.propagate = saved


def test_format_duration():
    assert [format_duration(s) for s in (4.2, 150, 3600 + 5 * 60)] == ["4 s", "2 min", "1 h 05 min"]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "carabm", *map(str, args)], capture_output=True, text=True, env=env)


def test_quiet_and_verbose_before_or_after_the_command(tmp_path):
    plain = cli("config", "list")
    assert plain.returncode == 0 and "carabm init quickstart" in plain.stdout
    before, after = cli("-q", "config", "list"), cli("config", "list", "-q")
    assert before.returncode == after.returncode == 0 and before.stdout == after.stdout
    assert "quickstart" in before.stdout and "carabm init" not in before.stdout
    assert cli("-v", "config", "list", "-q").returncode == 2

    out = tmp_path / "q.h5"
    quiet = cli("run", "quickstart", "--out", out, *TINY, "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no progress, no info lines
    assert quiet.stdout.startswith(f"carabm: wrote {out}") and len(quiet.stdout.splitlines()) == 1

    loud = cli("-v", "run", "quickstart", "--out", tmp_path / "v.h5", *TINY)  # stderr is a pipe: progress as lines
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert any(line.startswith("carabm: config: ") for line in lines), loud.stderr  # a debug message
    assert any(re.match(r"carabm: hour 1\.0/1 \(100 %\)", line) for line in lines), loud.stderr
    assert "CRS " in loud.stdout and "carabm report " in loud.stdout

    # carabm's log shows carabm's messages only: a fresh matplotlib logs 'generated new fontManager' on import
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    report = cli("-v", "report", out, "--out", tmp_path / "rep", env=env)
    assert report.returncode == 0, report.stderr
    assert "fontManager" not in report.stderr
    assert all(line.startswith("carabm") for line in report.stderr.splitlines()), report.stderr


def test_compile_notice_only_with_a_cold_numba_cache(tmp_path):
    code = ("from carabm.cli import configure_logging; configure_logging()\n"
            "from carabm.simulation import announce_compile; print(announce_compile('numpy'), announce_compile('cupy'))")  # fmt: skip
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")})  # fmt: skip
    assert cold.stdout.split() == ["True", "False"], cold.stderr
    assert "carabm: compiling the CPU kernels, once, ~30 s (numba caches them in " + str(tmp_path / "numba") in cold.stderr

    from carabm.engine import rng_compiled
    from carabm.engine.fields import FieldSolver
    from carabm.engine.jit_cache import cpu_kernels_cached
    from carabm.simulation import announce_compile

    solver = FieldSolver((4, 5, 6), 20.0, [10.0], [1e-3], cpu_impl="numba", conductance=np.ones((4, 5, 6), np.float32))
    solver.step(np.ones((1, 4, 5, 6), np.float32), 60.0)  # compiles once, or loads from numba's cache
    FieldSolver((4, 5, 6), 20.0, [10.0], [1e-3], cpu_impl="numba").step(np.ones((1, 4, 5, 6), np.float32), 60.0)
    rng_compiled.random_bits(np, 1, 0, np.arange(10), "test")
    rng_compiled.uniform(np, 1, 0, np.arange(10), "test")
    assert cpu_kernels_cached() is True
    assert announce_compile("numpy") is False
