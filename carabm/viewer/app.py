"""Interactive viewer (vispy SceneCanvas in a Qt window), a thin layer over :class:`~carabm.viewer.vispy_scene.VispyScene`.

Keys: space play/pause, right/left (or . ,) step, 1-5 toggle cell types, c colour cells by
type/state, w whole-lattice camera, b BBB close-up camera, o compartment outlines on/off,
s screenshot (PNG beside the run), q quit. A slider picks the snapshot; volume/slices is
chosen at start.
"""

from __future__ import annotations

import logging
from pathlib import Path

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
        elif event.text in "12345" and event.text:
            name = list(CELL_COLORS)[int(event.text) - 1]
            boxes[name].setChecked(not boxes[name].isChecked())

    play.clicked.connect(toggle_play)
    slider.valueChanged.connect(go)
    window.resize(1100, 800)
    window.show()
    qapp.exec()
