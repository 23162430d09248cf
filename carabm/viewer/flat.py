"""Matplotlib 2D frames, the fallback when no offscreen GL works: the cytokine's z-slice, BBB, projected cells.

Same colours and overlay as the 3D scene (:mod:`carabm.viewer.scene`); looks along z.
"""

from __future__ import annotations

import numpy as np

from carabm.viewer.scene import COMPARTMENT_COLORS, CYTOKINE_CMAP, Frame, RunScene, bbb_color

#: dots per inch of the figure (the pixel size is what counts)
DPI = 100


def draw_frame(run: RunScene, frame: Frame, size: tuple[int, int], color_by: str = "type", camera: str = "whole") -> np.ndarray:
    """RGB image ``uint8 [height, width, 3]`` of ``frame``: slice at mid z, cells projected along z.

    Cells coloured by ``type`` or ``state``; compartment outlines as rectangles (projected
    along z); ``camera`` ``bbb`` narrows x to the BBB layer and its two sides.
    """
    import matplotlib  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    width, height = size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=(0.05, 0.05, 0.08))
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.04, 0.12, 0.78, 0.70))
    ax.set_facecolor("black")
    nz, ny, nx = run.shape
    mid = nz // 2
    image = ax.imshow(frame.cytokine_log[mid], origin="lower", cmap=CYTOKINE_CMAP, vmin=run.clim[0], vmax=run.clim[1],
                      extent=(0, nx, 0, ny), interpolation="nearest")  # fmt: skip
    at_mid = frame.bbb_voxels[:, 0] == mid
    if at_mid.any():
        voxels = frame.bbb_voxels[at_mid]
        ax.scatter(voxels[:, 2] + 0.5, voxels[:, 1] + 0.5, c=bbb_color(frame.bbb_integrity[at_mid]), marker="s", s=18, alpha=0.6,
                   linewidths=0)  # fmt: skip
    for name, lo, hi in run.outline_boxes():
        ax.add_patch(Rectangle((lo[2], lo[1]), hi[2] - lo[2], hi[1] - lo[1], fill=False, edgecolor=COMPARTMENT_COLORS[name],
                               linewidth=1.5, alpha=0.9))  # fmt: skip
    for name, positions in frame.cells.items():
        if len(positions):
            ax.scatter(positions[:, 2] + 0.5, positions[:, 1] + 0.5, c=run.cell_colors(frame, name, color_by), s=9, linewidths=0)
    ax.set_xlim(*run.camera(camera)["x_range"])
    ax.set_ylim(0, ny)
    ax.set_xlabel("x [voxels]", color="white", fontsize=8)
    ax.set_ylabel("y [voxels]", color="white", fontsize=8)
    ax.tick_params(colors="white", labelsize=7)
    bar = fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.05, pad=0.12)
    bar.set_label(f"log10 {run.cytokine} [pg/mL] at z = {mid}; cells projected along z", color="white", fontsize=8)
    bar.ax.tick_params(colors="white", labelsize=7)
    fig.text(0.02, 0.98, frame.overlay, color="white", fontsize=9, va="top", ha="left", family="monospace")
    for k, (text, rgb) in enumerate(run.legend_lines(color_by)):
        fig.text(0.84, 0.80 - 0.045 * k, text, color=rgb, fontsize=8, va="top")
    fig.text(0.98, 0.02, "matplotlib 2D fallback", color="grey", fontsize=7, ha="right")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
