"""The vispy scene of a run: cell markers by type or state, a cytokine volume or slices, BBB voxels,
compartment outlines, a colour bar, camera presets, overlay text.

Shared by the headless renderer and the interactive viewer; vispy must already be set up
with an app backend (``vispy.use``) before :class:`VispyScene` is made.
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.color import Colormap, get_colormap

from carabm.viewer.scene import (
    CAMERA_PRESETS,
    CELL_COLORS,
    COLOR_BY,
    COMPARTMENT_COLORS,
    CROSSED_COLOR,
    CYTOKINE_CMAP,
    Frame,
    RunScene,
    bbb_color,
)

#: marker size of a cell, in voxel units (scaling markers follow the zoom)
CELL_SIZE_PX = 7.0
#: cytokine display modes
CYTOKINE_MODES = ("volume", "slices")
#: the row of bars at the bottom (cytokine colour bar, BBB colour bar, time line): left margin, bottom offset,
#: widest colour bar, height, gap between bars, in pixels
BARS_PX = (10, 44, 180, 12, 30)
#: lines of overlay text
OVERLAY_LINES = 7


def bar_boxes(width: int, height: int) -> dict[str, tuple[float, float, float, float]]:
    """Left, top, width and height in canvas pixels of the ``cytokine`` and ``bbb`` colour bars and the ``timeline``,
    side by side at the bottom; the colour bars narrow on small canvases, the time line takes the rest."""
    left, bottom, widest, bar_h, gap = BARS_PX
    bar_w = float(min(widest, max(40, (width - 2 * left - 2 * gap) // 3)))
    top = float(height - bottom - bar_h)
    timeline_left = left + 2 * (bar_w + gap)
    return {"cytokine": (left, top, bar_w, bar_h), "bbb": (left + bar_w + gap, top, bar_w, bar_h),
            "timeline": (timeline_left, top, max(40.0, width - left - timeline_left), bar_h)}  # fmt: skip


def _to_xyz(zyx: np.ndarray) -> np.ndarray:
    """Voxel (z, y, x) indices -> vispy (x, y, z) coordinates of the voxel centres."""
    return (np.asarray(zyx, dtype=np.float32)[:, ::-1] + 0.5).astype(np.float32)


def box_segments(lo_zyx: np.ndarray, hi_zyx: np.ndarray) -> np.ndarray:
    """The 12 edges of a box as 24 vispy (x, y, z) points (pairs), from voxel-edge bounds (z, y, x)."""
    lo, hi = np.asarray(lo_zyx, np.float32)[::-1], np.asarray(hi_zyx, np.float32)[::-1]
    corners = np.array([[(hi if (c >> a) & 1 else lo)[a] for a in range(3)] for c in range(8)], np.float32)
    pairs = [(c, c | (1 << a)) for c in range(8) for a in range(3) if not (c >> a) & 1]
    return corners[np.array(pairs).ravel()]


def _alpha_colormap(name: str) -> Colormap:
    """``name`` with alpha rising from transparent (low) to half-opaque (high), for translucent volumes."""
    base = get_colormap(name)
    stops = np.linspace(0, 1, 16)
    rgba = base.map(stops)
    rgba[:, 3] = 0.12 * stops**2
    return Colormap(rgba, controls=stops)


class VispyScene:
    """Visuals of one run inside a vispy ``SceneCanvas``; :meth:`show_frame` updates them."""

    def __init__(self, canvas: scene.SceneCanvas, run: RunScene, cytokine_mode: str = "volume", color_by: str = "type",
                 camera: str = "whole"):  # fmt: skip
        if cytokine_mode not in CYTOKINE_MODES:
            raise ValueError(f"cytokine_mode must be one of {CYTOKINE_MODES}, got {cytokine_mode!r}")
        if color_by not in COLOR_BY:
            raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
        self.canvas = canvas
        self.run = run
        self.cytokine_mode = cytokine_mode
        self.color_by = color_by
        self.view = canvas.central_widget.add_view()
        nz, ny, nx = run.shape
        self.view.camera = scene.TurntableCamera(fov=40)
        self.camera_preset = "whole"
        self.set_camera(camera)
        first = run.frame(0)
        self.cytokine = self._behind_markers(self._make_cytokine(first.cytokine_log))
        self.bbb = scene.visuals.Markers(parent=self.view.scene, scaling=True, alpha=0.8)
        self.cells: dict[str, scene.visuals.Markers] = {
            name: scene.visuals.Markers(parent=self.view.scene, scaling=True) for name in CELL_COLORS
        }
        self.crossed = scene.visuals.Markers(parent=self.view.scene, scaling=True)
        self.outlines = self._make_outlines()
        self.overlay = [
            scene.visuals.Text("", color="white", font_size=9, anchor_x="left", anchor_y="center", parent=canvas.scene) for _ in range(OVERLAY_LINES)
        ]
        self.legend: list[scene.visuals.Text] = []
        self._make_legend()
        self.scale_text = scene.visuals.Text(run.colour_scale_text(), color="white", font_size=8, anchor_x="left",
                                             anchor_y="center", parent=canvas.scene)  # fmt: skip
        self.colorbar, self.colorbar_labels = self._make_colorbar()
        self.bbb_bar, self.bbb_bar_labels = self._make_bbb_colorbar()
        self.timeline, self.timeline_tick, self.timeline_labels = self._make_timeline()
        self.extra_text = ""
        self.visible: dict[str, bool] = dict.fromkeys(CELL_COLORS, True)
        self._place_text()
        canvas.events.resize.connect(lambda _event: self._place_text())
        self.frame: Frame | None = None
        self.show_frame(first)

    # ------------------------------------------------------------------ building
    def _make_cytokine(self, cytokine_log: np.ndarray) -> list[scene.visuals.Volume]:
        clim = self.run.clim
        if self.cytokine_mode == "volume":
            volume = scene.visuals.Volume(cytokine_log, clim=clim, method="translucent", cmap=_alpha_colormap(CYTOKINE_CMAP),
                                          parent=self.view.scene)  # fmt: skip
            return [volume]
        nz, ny, nx = self.run.shape
        planes = []
        # three orthogonal planes through the lattice centre; vispy plane coordinates are (z, y, x)
        for normal in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
            plane = scene.visuals.Volume(cytokine_log, clim=clim, cmap=CYTOKINE_CMAP, raycasting_mode="plane",
                                         plane_position=(nz / 2, ny / 2, nx / 2), plane_normal=normal, plane_thickness=1.0,
                                         parent=self.view.scene)  # fmt: skip
            planes.append(plane)
        return planes

    def _make_outlines(self) -> scene.visuals.Line:
        """Outline boxes of the compartments (tissue, blood, BBB, CNS), one line visual, coloured per compartment."""
        boxes = self.run.outline_boxes()
        if not boxes:  # no compartment image: a grey box around the lattice
            nz, ny, nx = self.run.shape
            boxes = [("tissue", np.zeros(3, np.float32), np.array([nz, ny, nx], np.float32))]
        points = np.concatenate([box_segments(lo, hi) for _name, lo, hi in boxes])
        colors = np.concatenate([np.tile((*COMPARTMENT_COLORS[name], 0.9), (24, 1)) for name, _lo, _hi in boxes]).astype(np.float32)
        return scene.visuals.Line(points, color=colors, connect="segments", width=2, method="gl", parent=self.view.scene)

    def _make_legend(self) -> None:
        for text in self.legend:
            text.parent = None
        self.legend = [
            scene.visuals.Text(text, color=(*rgb, 1.0), font_size=8, anchor_x="left", anchor_y="center", parent=self.canvas.scene)
            for text, rgb in self.run.legend_lines(self.color_by)
        ]

    def _make_colorbar(self) -> tuple[scene.visuals.Image, list[scene.visuals.Text]]:
        """A horizontal gradient of the cytokine colour map with its log range written at the ends."""
        gradient = get_colormap(CYTOKINE_CMAP).map(np.linspace(0, 1, 256))[:, :3].astype(np.float32)
        bar = scene.visuals.Image(np.ascontiguousarray(np.repeat(gradient[None], 2, axis=0)), interpolation="nearest",
                                  parent=self.canvas.scene)  # fmt: skip
        low, high = self.run.clim
        labels = [
            scene.visuals.Text(text, color="white", font_size=7, anchor_x=anchor, anchor_y="center", parent=self.canvas.scene)
            for text, anchor in ((f"{10**low:.2g}", "left"), (f"{10**high:.2g} pg/mL", "right"),
                                 (f"{self.run.cytokine} (log)", "center"))  # fmt: skip
        ]
        return bar, labels

    def _make_bbb_colorbar(self) -> tuple[scene.visuals.Image, list[scene.visuals.Text]]:
        """A horizontal gradient of the BBB integrity scale, the run's lowest integrity (red) to 1 (blue)."""
        low = self.run.bbb_low
        gradient = bbb_color(np.linspace(low, 1.0, 256), low)
        bar = scene.visuals.Image(np.ascontiguousarray(np.repeat(gradient[None], 2, axis=0)), interpolation="nearest",
                                  parent=self.canvas.scene)  # fmt: skip
        labels = [
            scene.visuals.Text(text, color="white", font_size=7, anchor_x=anchor, anchor_y="center", parent=self.canvas.scene)
            for text, anchor in ((f"{low:.2f}", "left"), ("1 intact", "right"), ("BBB integrity", "center"))
        ]
        return bar, labels

    def _make_timeline(self) -> tuple[scene.visuals.Image, scene.visuals.Line, list[scene.visuals.Text]]:
        """The run's time from 0 to its last snapshot: grey, red while the BBB is breached; a white tick at the frame."""
        times = np.linspace(0.0, max(float(self.run.times_h[-1]), 1e-6), 512)
        strip = np.tile(np.float32(0.35), (512, 3))
        strip[[self.run.breach.covers(float(t)) for t in times]] = (0.95, 0.10, 0.10)
        image = scene.visuals.Image(np.ascontiguousarray(np.repeat(strip[None], 2, axis=0)), interpolation="nearest",
                                    parent=self.canvas.scene)  # fmt: skip
        tick = scene.visuals.Line(np.zeros((2, 2), np.float32), color="white", width=3, parent=self.canvas.scene)
        label = "time line; red: BBB breach" if self.run.breach.happened else "time line (no BBB breach)"
        labels = [
            scene.visuals.Text(text, color="white", font_size=7, anchor_x=anchor, anchor_y="center", parent=self.canvas.scene)
            for text, anchor in (("day 0", "left"), (f"day {self.run.times_h[-1] / 24:.1f}", "right"), (label, "center"))
        ]
        return image, tick, labels

    @staticmethod
    def _behind_markers(volumes: list[scene.visuals.Volume]) -> list[scene.visuals.Volume]:
        """Draw the cytokine first and without writing depth, so cells and BBB stay visible through it."""
        for volume in volumes:
            volume.order = -1
            volume.set_gl_state("translucent", depth_test=False)
        return volumes

    def _place_text(self) -> None:
        width, height = self.canvas.size
        for k, text in enumerate(self.overlay):
            text.pos = (10, 16 + 17 * k)
        for k, text in enumerate(self.legend):
            text.pos = (width - 150, 16 + 15 * k)
        self.scale_text.pos = (10, height - 14)
        boxes = bar_boxes(width, height)
        for name, bar, labels, n in (("cytokine", self.colorbar, self.colorbar_labels, 256), ("bbb", self.bbb_bar, self.bbb_bar_labels, 256),
                                     ("timeline", self.timeline, self.timeline_labels, 512)):  # fmt: skip
            left, top, bar_w, bar_h = boxes[name]
            bar.transform = scene.transforms.STTransform(scale=(bar_w / n, bar_h / 2), translate=(left, top))
            labels[0].pos = (left, top - 8)
            labels[1].pos = (left + bar_w, top - 8)
            labels[2].pos = (left + bar_w / 2, top + bar_h + 8)
        self._place_tick()

    def _place_tick(self) -> None:
        """Move the time line's tick to the current frame's time."""
        if getattr(self, "frame", None) is None:
            return
        left, top, line_w, bar_h = bar_boxes(*self.canvas.size)["timeline"]
        x = left + line_w * self.frame.time_h / max(float(self.run.times_h[-1]), 1e-6)
        self.timeline_tick.set_data(np.array([[x, top - 3], [x, top + bar_h + 3]], np.float32))

    # ------------------------------------------------------------------ updating
    def set_visible(self, cell_type: str, visible: bool) -> None:
        """Show or hide one cell type's markers."""
        self.visible[cell_type] = visible
        self.cells[cell_type].visible = visible

    def set_color_by(self, color_by: str) -> None:
        """Colour the cells by ``type`` or by agent ``state``; the legend follows."""
        if color_by not in COLOR_BY:
            raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
        self.color_by = color_by
        self._make_legend()
        self._place_text()
        if self.frame is not None:
            self.show_frame(self.frame)

    def set_camera(self, preset: str) -> None:
        """Move the camera to a preset of :data:`~carabm.viewer.scene.CAMERA_PRESETS` (``whole`` or ``bbb``)."""
        if preset not in CAMERA_PRESETS:
            raise ValueError(f"camera preset must be one of {CAMERA_PRESETS}, got {preset!r}")
        view = self.run.camera(preset)
        camera = self.view.camera
        camera.elevation, camera.azimuth = view["elevation"], view["azimuth"]
        camera.distance = view["distance"]
        camera.center = view["center"]
        self.camera_preset = preset
        self.canvas.update()

    def set_outlines(self, visible: bool) -> None:
        """Show or hide the compartment outlines."""
        self.outlines.visible = visible
        self.canvas.update()

    def show_frame(self, frame: Frame) -> None:
        """Point every visual at ``frame``'s data."""
        self.frame = frame
        for volume in self.cytokine:
            volume.set_data(frame.cytokine_log, clim=self.run.clim)
        for name, markers in self.cells.items():
            positions = frame.cells.get(name, np.zeros((0, 3), np.int32))
            if len(positions):
                rgba = np.concatenate([self.run.cell_colors(frame, name, self.color_by), np.ones((len(positions), 1), np.float32)], axis=1)
                markers.set_data(_to_xyz(positions), face_color=rgba, edge_width=0, size=0.6, symbol="disc")
            markers.visible = bool(len(positions)) and self.visible[name]
        if len(frame.bbb_voxels):
            rgba = np.concatenate([self.run.bbb_colors(frame), np.full((len(frame.bbb_voxels), 1), 0.8, np.float32)], axis=1)
            self.bbb.set_data(_to_xyz(frame.bbb_voxels), face_color=rgba, edge_width=0, size=0.9, symbol="square")
        self.bbb.visible = bool(len(frame.bbb_voxels))
        crossed = frame.crossed_positions()
        if len(crossed):  # a ring around each cell that crossed into the CNS
            self.crossed.set_data(_to_xyz(crossed), face_color=(*CROSSED_COLOR, 1.0), edge_width=0, size=2.2, symbol="ring")
        self.crossed.visible = bool(len(crossed))
        self._place_tick()
        lines = frame.overlay.splitlines() + ([self.extra_text] if self.extra_text else [])
        for k, text in enumerate(self.overlay):
            text.text = lines[k] if k < len(lines) else ""
        self.canvas.update()
