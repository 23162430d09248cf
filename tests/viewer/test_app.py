"""Smoke test of ``carabm view`` under a virtual X display: step, play/pause, colour by state, camera preset,
outlines, screenshot, quit by keys."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = """
import sys
import vispy
vispy.use(app="pyside6")
from vispy import app as vispy_app
from vispy.util import keys
from carabm.viewer import app, vispy_scene

canvases = []
recorded = []
class Recorded(vispy_scene.VispyScene):
    def __init__(self, canvas, *args, **kwargs):
        super().__init__(canvas, *args, **kwargs)
        canvases.append(canvas)
        recorded.append(self)
vispy_scene.VispyScene = Recorded

def press(_event):
    canvas = canvases[0]
    for key, text in ((keys.RIGHT, ""), (keys.SPACE, " "), (keys.SPACE, " "), (keys.Key("1"), "1"),
                      (keys.Key("C"), "c"), (keys.Key("B"), "b"), (keys.Key("O"), "o"), (keys.Key("O"), "o"),
                      (keys.Key("S"), "s"), (keys.Key("W"), "w"), (keys.Key("Q"), "q")):
        canvas.events.key_press(key=key, text=text)
        if text == "s":
            drawn = recorded[0]
            print("state", drawn.color_by, drawn.camera_preset, drawn.outlines.visible)

timer = vispy_app.Timer(2.0, connect=press, iterations=1, start=True)
app.view(sys.argv[1])
print("closed")
"""


def test_view_keys_under_xvfb(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("vispy")
    pytest.importorskip("PySide6")
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run not installed (apt-get install xvfb)")
    run = tmp_path / "run.h5"
    shutil.copy(tiny_run, run)
    done = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-c", DRIVER, str(run)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "closed" in done.stdout
    assert "state state bbb True" in done.stdout  # c: by state, b: BBB close-up, o twice: outlines back on
    assert (tmp_path / "run_frame00001.png").stat().st_size > 1000  # stepped once, then the screenshot key
