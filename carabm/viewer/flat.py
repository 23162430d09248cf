"""Matplotlib 2D frames, the fallback when no offscreen GL works: the cytokine's z-slice, BBB, projected cells.

Same colours and overlay as the 3D scene (:mod:`carabm.viewer.scene`); looks along z.
"""

from __future__ import annotations

import numpy as np

from carabm.viewer.scene import BBB_BREACHED, COMPARTMENT_COLORS, CROSSED_COLOR, CYTOKINE_CMAP, Frame, RunScene, bbb_color

#: dots per inch of the figure (the pixel size is what counts)
DPI = 100


def draw_frame(run: RunScene, frame: Frame, size: tuple[int, int], color_by: str = "type", camera: str = "whole") -> np.ndarray:
    """RGB image ``uint8 [height, width, 3]`` of ``frame``: slice at mid z, cells projected along z.

    Cells coloured by ``type`` or ``state``, a white ring around each cell that crossed into the
    CNS; BBB voxels on the run's integrity scale (with its colour bar); compartment outlines as
    rectangles (projected along z); a time line with the BBB breach in red; ``camera`` ``bbb``
    narrows x to the BBB layer and its two sides.
    """
    import matplotlib  # noqa: PLC0415
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415
    from matplotlib.colors import ListedColormap, Normalize  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    width, height = size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=(0.05, 0.05, 0.08))
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.06, 0.26, 0.76, 0.58))
    ax.set_facecolor("black")
    nz, ny, nx = run.shape
    mid = nz // 2
    image = ax.imshow(frame.cytokine_log[mid], origin="lower", cmap=CYTOKINE_CMAP, vmin=run.clim[0], vmax=run.clim[1],
                      extent=(0, nx, 0, ny), interpolation="nearest")  # fmt: skip
    at_mid = frame.bbb_voxels[:, 0] == mid
    x_range = run.camera(camera)["x_range"]
    if at_mid.any():  # one square filling most of each BBB voxel, whatever the zoom
        voxel_pt = min(ax.get_position().width * width / (x_range[1] - x_range[0]), ax.get_position().height * height / ny) * 72 / DPI
        voxels = frame.bbb_voxels[at_mid]
        ax.scatter(voxels[:, 2] + 0.5, voxels[:, 1] + 0.5, c=run.bbb_colors(frame)[at_mid], marker="s", s=(0.8 * voxel_pt) ** 2,
                   alpha=0.9, linewidths=0)  # fmt: skip
    for name, lo, hi in run.outline_boxes():
        ax.add_patch(Rectangle((lo[2], lo[1]), hi[2] - lo[2], hi[1] - lo[1], fill=False, edgecolor=COMPARTMENT_COLORS[name],
                               linewidth=1.5, alpha=0.9))  # fmt: skip
    for name, positions in frame.cells.items():
        if len(positions):
            ax.scatter(positions[:, 2] + 0.5, positions[:, 1] + 0.5, c=run.cell_colors(frame, name, color_by), s=9, linewidths=0)
    crossed = frame.crossed_positions()
    if len(crossed):
        ax.scatter(crossed[:, 2] + 0.5, crossed[:, 1] + 0.5, s=90, facecolors="none", edgecolors=[CROSSED_COLOR], linewidths=1.4)
    ax.set_xlim(*x_range)
    ax.set_ylim(0, ny)
    ax.set_xlabel("x [voxels]", color="white", fontsize=8)
    ax.set_ylabel("y [voxels]", color="white", fontsize=8)
    ax.tick_params(colors="white", labelsize=7)
    bar = fig.colorbar(image, cax=fig.add_axes((0.06, 0.075, 0.34, 0.018)), orientation="horizontal")
    bar.set_label(f"log10 {run.cytokine} [pg/mL] at z = {mid}; cells projected along z", color="white", fontsize=8)
    bar.ax.tick_params(colors="white", labelsize=7)
    low = run.bbb_low
    scale = ScalarMappable(Normalize(low, 1.0), ListedColormap(bbb_color(np.linspace(low, 1.0, 256), low)))
    bbb_bar = fig.colorbar(scale, cax=fig.add_axes((0.48, 0.075, 0.34, 0.018)), orientation="horizontal")
    bbb_bar.set_label(f"BBB integrity (1 intact; red: {low:.2f}, this run's lowest)", color="white", fontsize=8)
    bbb_bar.ax.tick_params(colors="white", labelsize=7)
    _timeline(fig, run, frame)
    fig.text(0.02, 0.98, frame.overlay, color="white", fontsize=9, va="top", ha="left", family="monospace")
    for k, (text, rgb) in enumerate(run.legend_lines(color_by)):
        fig.text(0.84, 0.80 - 0.045 * k, text, color=rgb, fontsize=8, va="top")
    fig.text(0.98, 0.02, "matplotlib 2D fallback", color="grey", fontsize=7, ha="right")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _timeline(fig: object, run: RunScene, frame: Frame) -> None:
    """A strip under the image: the run's days, the BBB breach in red, the frame's time as a white tick."""
    end_day = max(float(run.times_h[-1]) / 24, 1e-6)
    ax = fig.add_axes((0.06, 0.165, 0.76, 0.022), facecolor=(0.35, 0.35, 0.35))  # type: ignore[attr-defined]
    breach = run.breach
    if breach.happened:
        stop = breach.end_h / 24 if breach.end_h is not None else end_day
        ax.axvspan(breach.start_h / 24, stop, color=BBB_BREACHED)  # type: ignore[operator]
    ax.axvline(frame.time_h / 24, color="white", linewidth=2.5)
    ax.set_xlim(0, end_day)
    ax.set_yticks([])
    ax.tick_params(colors="white", labelsize=7, length=2, pad=1)
    ax.set_xlabel("day" + ("; red: BBB breach" if breach.happened else " (no BBB breach)"), color="white", fontsize=7, labelpad=1)
