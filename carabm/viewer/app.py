"""Interactive viewer (vispy SceneCanvas in a Qt window), a thin layer over :class:`~carabm.viewer.vispy_scene.VispyScene`.

Keys: space play/pause, right/left (or . ,) step, 1-5 toggle cell types, c colour cells by
type/state, w whole-lattice camera, b BBB close-up camera, o compartment outlines on/off,
j jump to the BBB breach, s screenshot (PNG beside the run), q quit. A slider picks the
snapshot (red over the BBB breach); volume/slices is chosen at start.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from carabm.errors import CarabmError
from carabm.viewer.scene import CELL_COLORS, COLOR_BY, RunScene

log = logging.getLogger("carabm")

#: seconds between frames while playing
PLAY_INTERVAL_S = 0.5


def _import_gui():  # noqa: ANN202
    """vispy with its Qt backend, or a one-line CarabmError saying what to install."""
    try:
        import vispy  # noqa: PLC0415

        vispy.use(app="pyside6")
        from vispy import app, scene  # noqa: PLC0415
        from vispy.app.backends._pyside6 import QtCore, QtWidgets  # noqa: PLC0415
    except Exception as exc:  # ImportError, or vispy failing to load the Qt backend
        why = " ".join(str(exc).split())
        raise CarabmError(
            f"carabm view needs vispy and Qt (PySide6): pip install 'carabm[viewer]' ({type(exc).__name__}: {why}); "
            "without a display use `carabm render`"
        ) from None
    return app, scene, QtWidgets, QtCore


def next_color_by(current: str) -> str:
    """The colouring the ``c`` key switches to: type -> state -> type."""
    return COLOR_BY[(COLOR_BY.index(current) + 1) % len(COLOR_BY)]


#: slider groove colours: outside and during a BBB breach
SLIDER_GREY, SLIDER_BREACH = "#5a5a5a", "#e01a1a"


def slider_style(breached: np.ndarray) -> str:
    """Qt style sheet of the time slider: a grey groove, red over the snapshots where the BBB is breached.

    ``breached``: one bool per snapshot (slider position ``i`` of ``n`` sits at ``i / (n - 1)``
    along the groove; a breached snapshot colours half the way to its neighbours).
    """
    breached = np.asarray(breached, dtype=bool)
    n = len(breached)
    stops = [(0.0, SLIDER_GREY)]
    edges = np.flatnonzero(np.diff(np.concatenate([[False], breached, [False]]).astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2]):  # each run of breached snapshots [start, stop)
        lo = min(max((start - 0.5) / max(n - 1, 1), 0.0), 1.0)
        hi = min(max((stop - 0.5) / max(n - 1, 1), 0.0), 1.0)
        stops += [(lo, SLIDER_GREY), (min(lo + 1e-4, 1.0), SLIDER_BREACH), (hi, SLIDER_BREACH)]
        if hi < 1.0:
            stops.append((hi + 1e-4, SLIDER_GREY))
    if stops[-1][0] < 1.0:
        stops.append((1.0, stops[-1][1]))
    gradient = ", ".join(f"stop:{at:.4f} {colour}" for at, colour in stops)
    return ("QSlider::groove:horizontal { height: 10px; border-radius: 4px; "
            f"background: qlineargradient(x1:0, y1:0, x2:1, y2:0, {gradient}); }}\n"
            "QSlider::handle:horizontal { background: white; border: 1px solid #222; width: 12px; margin: -4px 0; border-radius: 6px; }")  # fmt: skip


#: keys of the camera presets (same presets as ``carabm render --camera``)
CAMERA_KEYS = {"w": "whole", "b": "bbb"}


def view(path: str | Path, cytokine: str = "IL6", cytokine_mode: str = "volume", color_by: str = "type",
         camera: str = "whole") -> None:  # fmt: skip
    """Open the interactive viewer on the run ``path`` and block until its window closes."""
    app, scene, qt, qt_core = _import_gui()
    from carabm.viewer.render import _write_png  # noqa: PLC0415
    from carabm.viewer.vispy_scene import VispyScene  # noqa: PLC0415

    run = RunScene(path, cytokine=cytokine)
    qapp = app.use_app().native
    window = qt.QWidget()
    window.setWindowTitle(f"carabm view — {Path(path).name}")
    layout = qt.QVBoxLayout(window)
    canvas = scene.SceneCanvas(keys="interactive", size=(1000, 720), bgcolor=(0.05, 0.05, 0.08, 1.0), parent=window)
    layout.addWidget(canvas.native)
    drawn = VispyScene(canvas, run, cytokine_mode=cytokine_mode, color_by=color_by, camera=camera)

    controls = qt.QHBoxLayout()
    play = qt.QPushButton("play")
    slider = qt.QSlider(qt_core.Qt.Orientation.Horizontal)
    slider.setRange(0, len(run) - 1)
    slider.setStyleSheet(slider_style(run.breached_snapshots()))
    slider.setToolTip(run.breach.text())
    controls.addWidget(play)
    controls.addWidget(slider, stretch=1)
    boxes = {}
    for name in CELL_COLORS:
        box = qt.QCheckBox(name)
        box.setChecked(True)
        box.toggled.connect(lambda checked, n=name: drawn.set_visible(n, checked))
        controls.addWidget(box)
        boxes[name] = box
    layout.addLayout(controls)
    breach_line = qt.QLabel(run.breach.text() + ("  (red on the slider; j jumps to its start)" if run.breach.happened else ""))
    breach_line.setStyleSheet(f"color: {SLIDER_BREACH if run.breach.happened else '#888'};")
    layout.addWidget(breach_line)

    state = {"index": 0}

    def go(index: int) -> None:
        index = index % len(run)
        state["index"] = index
        drawn.show_frame(run.frame(index))
        if slider.value() != index:
            slider.setValue(index)

    timer = app.Timer(interval=PLAY_INTERVAL_S, connect=lambda _event: go(state["index"] + 1), start=False)

    def toggle_play() -> None:
        if timer.running:
            timer.stop()
        else:
            timer.start()
        play.setText("pause" if timer.running else "play")

    def screenshot() -> None:
        name = Path(path).with_name(f"{Path(path).stem}_frame{state['index']:05d}.png")
        _write_png(name, canvas.render(alpha=False)[..., :3])
        log.info("screenshot: %s", name)

    @canvas.events.key_press.connect
    def on_key(event) -> None:  # noqa: ANN001
        key = event.key.name if event.key is not None else ""
        if key == "Space":
            toggle_play()
        elif key in ("Right", "."):
            go(state["index"] + 1)
        elif key in ("Left", ","):
            go(state["index"] - 1)
        elif key in ("S", "s"):
            screenshot()
        elif key in ("Q", "q"):
            window.close()
        elif key in ("C", "c"):
            drawn.set_color_by(next_color_by(drawn.color_by))
        elif key.lower() in CAMERA_KEYS:
            drawn.set_camera(CAMERA_KEYS[key.lower()])
        elif key in ("O", "o"):
            drawn.set_outlines(not drawn.outlines.visible)
        elif key in ("J", "j") and run.breached_snapshots().any():
            go(int(np.argmax(run.breached_snapshots())))
        elif event.text in "12345" and event.text:
            name = list(CELL_COLORS)[int(event.text) - 1]
            boxes[name].setChecked(not boxes[name].isChecked())

    play.clicked.connect(toggle_play)
    slider.valueChanged.connect(go)
    window.resize(1100, 800)
    window.show()
    qapp.exec()
