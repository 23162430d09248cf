"""The vispy scene of a run: cell markers by type, a cytokine volume or slices, BBB voxels, overlay text.

Shared by the headless renderer and the interactive viewer; vispy must already be set up
with an app backend (``vispy.use``) before :class:`VispyScene` is made.
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.color import Colormap, get_colormap

from carabm.viewer.scene import CELL_COLORS, CYTOKINE_CMAP, Frame, RunScene, bbb_color

#: marker size of a cell, in voxel units (scaling markers follow the zoom)
CELL_SIZE_PX = 7.0
#: cytokine display modes
CYTOKINE_MODES = ("volume", "slices")


def _to_xyz(zyx: np.ndarray) -> np.ndarray:
    """Voxel (z, y, x) indices -> vispy (x, y, z) coordinates of the voxel centres."""
    return (np.asarray(zyx, dtype=np.float32)[:, ::-1] + 0.5).astype(np.float32)


def _alpha_colormap(name: str) -> Colormap:
    """``name`` with alpha rising from transparent (low) to half-opaque (high), for translucent volumes."""
    base = get_colormap(name)
    stops = np.linspace(0, 1, 16)
    rgba = base.map(stops)
    rgba[:, 3] = 0.12 * stops**2
    return Colormap(rgba, controls=stops)


class VispyScene:
    """Visuals of one run inside a vispy ``SceneCanvas``; :meth:`show_frame` updates them."""

    def __init__(self, canvas: scene.SceneCanvas, run: RunScene, cytokine_mode: str = "volume"):
        if cytokine_mode not in CYTOKINE_MODES:
            raise ValueError(f"cytokine_mode must be one of {CYTOKINE_MODES}, got {cytokine_mode!r}")
        self.canvas = canvas
        self.run = run
        self.cytokine_mode = cytokine_mode
        self.view = canvas.central_widget.add_view()
        nz, ny, nx = run.shape
        self.view.camera = scene.TurntableCamera(elevation=28, azimuth=-35, fov=40, distance=1.9 * max(nz, ny, nx))
        self.view.camera.center = (nx / 2, ny / 2, nz / 2)
        first = run.frame(0)
        self.cytokine = self._behind_markers(self._make_cytokine(first.cytokine_log))
        self.bbb = scene.visuals.Markers(parent=self.view.scene, scaling=True, alpha=0.55)
        self.cells: dict[str, scene.visuals.Markers] = {
            name: scene.visuals.Markers(parent=self.view.scene, scaling=True) for name in CELL_COLORS
        }
        scene.visuals.Box(width=nx, height=nz, depth=ny, color=None, edge_color=(0.6, 0.6, 0.6, 0.6), parent=self.view.scene).transform = (
            scene.transforms.STTransform(translate=(nx / 2, ny / 2, nz / 2))
        )
        self.overlay = [
            scene.visuals.Text("", color="white", font_size=9, anchor_x="left", anchor_y="center", parent=canvas.scene) for _ in range(4)
        ]
        self.legend = [
            scene.visuals.Text(text, color=(*rgb, 1.0), font_size=8, anchor_x="left", anchor_y="center", parent=canvas.scene)
            for text, rgb in run.legend_lines()
        ]
        self.scale_text = scene.visuals.Text(run.colour_scale_text(), color="white", font_size=8, anchor_x="left",
                                             anchor_y="center", parent=canvas.scene)  # fmt: skip
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
            text.pos = (width - 110, 16 + 15 * k)
        self.scale_text.pos = (10, height - 14)

    # ------------------------------------------------------------------ updating
    def set_visible(self, cell_type: str, visible: bool) -> None:
        """Show or hide one cell type's markers."""
        self.visible[cell_type] = visible
        self.cells[cell_type].visible = visible

    def show_frame(self, frame: Frame) -> None:
        """Point every visual at ``frame``'s data."""
        self.frame = frame
        for volume in self.cytokine:
            volume.set_data(frame.cytokine_log, clim=self.run.clim)
        for name, markers in self.cells.items():
            positions = frame.cells.get(name, np.zeros((0, 3), np.int32))
            if len(positions):
                markers.set_data(_to_xyz(positions), face_color=(*CELL_COLORS[name], 1.0), edge_width=0, edge_color=(*CELL_COLORS[name], 1.0), size=0.6, symbol="disc")
            markers.visible = bool(len(positions)) and self.visible[name]
        if len(frame.bbb_voxels):
            rgba = np.concatenate([bbb_color(frame.bbb_integrity), np.full((len(frame.bbb_voxels), 1), 0.55, np.float32)], axis=1)
            self.bbb.set_data(_to_xyz(frame.bbb_voxels), face_color=rgba, edge_width=0, size=0.9, symbol="square")
        self.bbb.visible = bool(len(frame.bbb_voxels))
        lines = frame.overlay.splitlines() + ([self.extra_text] if self.extra_text else [])
        for k, text in enumerate(self.overlay):
            text.text = lines[k] if k < len(lines) else ""
        self.canvas.update()
