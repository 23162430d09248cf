"""What a frame shows, independent of how it is drawn: cells by type or state, one cytokine, the BBB,
compartment outlines, camera presets, the overlay.

Both the headless renderer (:mod:`carabm.viewer.render`) and the interactive viewer
(:mod:`carabm.viewer.app`) read a run through :class:`RunScene` and draw :class:`Frame` objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import carabm.biology  # noqa: F401  (registers the built-in cell types, whose colours the viewer shows)
from carabm.errors import CarabmError, InputFileError
from carabm.io.catalog import CATALOG
from carabm.io.config import config_from_text
from carabm.io.hdf5 import read_state_codes
from carabm.io.runfile import Snapshots, open_read, read_config_text


class _CatalogColours(Mapping[str, tuple[float, float, float]]):
    """The marker colour of each registered cell type (its catalog ``colour``), plug-ins' included once loaded."""

    def __getitem__(self, name: str) -> tuple[float, float, float]:
        if name not in CATALOG.cell_types:
            raise KeyError(name)
        return CATALOG.cell_types[name].colour

    def __iter__(self) -> Iterator[str]:
        return iter(list(CATALOG.cell_types))

    def __len__(self) -> int:
        return len(CATALOG.cell_types)


log = logging.getLogger("carabm")
#: marker colour of each cell type (RGB 0..1), from the catalog; the legend repeats them
CELL_COLORS: Mapping[str, tuple[float, float, float]] = _CatalogColours()
#: colour of a cell type the catalog does not know (a plug-in that is not available)
UNKNOWN_CELL_COLOR = (0.55, 0.55, 0.55)
#: BBB integrity colours: intact (1) -> the run's lowest integrity (see :meth:`RunScene.bbb_scale`)
BBB_INTACT = (0.35, 0.45, 0.95)
BBB_BREACHED = (0.95, 0.10, 0.10)
#: the BBB counts as breached while its mean integrity (time series ``bbb_integrity``) is below this [1]
BREACH_INTEGRITY = 0.9
#: outline colour of the rings around cells that have crossed into the CNS
CROSSED_COLOR = (1.00, 1.00, 1.00)
#: colour map of the cytokine field (log10 pg/mL)
CYTOKINE_CMAP = "viridis"
#: label of the compartment image (lattice/compartment)
BBB_LABEL = 2
#: compartment codes of ``lattice/compartment`` (as :mod:`carabm.engine.lattice`)
COMPARTMENT_CODES: dict[str, int] = {"tissue": 0, "blood": 1, "bbb": 2, "cns": 3}
#: outline colour of each compartment (RGB 0..1), the same in 3D and 2D
COMPARTMENT_COLORS: dict[str, tuple[float, float, float]] = {
    "tissue": (0.62, 0.62, 0.62),  # grey
    "blood": (0.80, 0.00, 0.40),  # crimson: vessels
    "bbb": (1.00, 1.00, 1.00),  # white: the barrier layer
    "cns": (0.70, 0.55, 1.00),  # lavender: the brain
}
#: outlines skip connected pieces of a compartment smaller than this many voxels
OUTLINE_MIN_VOXELS = 4
#: marker colour of each agent state when cells are coloured by state (``--color-by state``)
STATE_COLORS: dict[str, tuple[float, float, float]] = {
    "resting": (0.78, 0.78, 0.78),  # light grey: resting CAR-T and myeloid cells, live B cells
    "activated": (1.00, 0.60, 0.00),  # amber (distinct from the breached-BBB red)
    "exhausted": (0.45, 0.25, 1.00),  # violet: exhausted CAR-T
}
#: ways to colour the cells
COLOR_BY = ("type", "state")
#: camera presets: the whole lattice, or a close-up of the BBB seen from the CNS side
CAMERA_PRESETS = ("whole", "bbb")
#: lowest concentration on the log colour scale [pg/mL]
CYTOKINE_FLOOR_PG_ML = 1e-2


def bbb_color(integrity: np.ndarray, low: float = 0.0) -> np.ndarray:
    """RGB colours ``[n, 3]`` for BBB integrities on the scale ``low`` (red, breached) .. 1 (blue, intact).

    Values at or below ``low`` are fully red; a run's scale starts at its lowest integrity, so
    a fall to 0.65 shows as red instead of a barely changed blue.
    """
    low = min(float(low), 1.0 - 1e-6)
    t = np.clip((np.asarray(integrity, dtype=np.float32) - low) / (1.0 - low), 0.0, 1.0)[:, None]
    return t * np.asarray(BBB_INTACT, np.float32) + (1 - t) * np.asarray(BBB_BREACHED, np.float32)


@dataclass
class Breach:
    """When the BBB was breached (mean integrity below :data:`BREACH_INTEGRITY`) and how far it fell.

    ``start_h``/``end_h`` are None when it never was (``end_h`` also while still breached at
    the end); ``lowest``/``lowest_h`` give the minimum of the mean integrity and its time.
    """

    start_h: float | None
    end_h: float | None
    lowest: float
    lowest_h: float
    threshold: float = BREACH_INTEGRITY

    @classmethod
    def from_series(cls, time_h: np.ndarray, mean_integrity: np.ndarray, threshold: float = BREACH_INTEGRITY) -> Breach:
        """The breach of a time series of mean integrity (one value per step or snapshot)."""
        time_h, values = np.asarray(time_h, np.float64), np.asarray(mean_integrity, np.float64)
        if values.size == 0:
            return cls(None, None, 1.0, 0.0, threshold)
        below = np.flatnonzero(values < threshold)
        start = float(time_h[below[0]]) if below.size else None
        after = np.flatnonzero(values[below[0] :] >= threshold) if below.size else np.array([], np.int64)
        end = float(time_h[below[0] + after[0]]) if after.size else None
        k = int(np.argmin(values))
        return cls(start, end, float(values[k]), float(time_h[k]), threshold)

    @property
    def happened(self) -> bool:
        """Whether the mean integrity ever fell below the threshold."""
        return self.start_h is not None

    def covers(self, time_h: float) -> bool:
        """Whether the BBB is breached at ``time_h``."""
        return self.happened and time_h >= self.start_h and (self.end_h is None or time_h < self.end_h)  # type: ignore[operator]

    def text(self) -> str:
        """One line for frame labels: ``BBB breach: integrity down to 0.64 on day 4.3 (mean < 0.9 from day 3.1)``."""
        if not self.happened:
            return f"no BBB breach (mean integrity stays >= {self.threshold:g}; lowest {self.lowest:.2f})"
        span = f"from day {self.start_h / 24:.1f}" + ("" if self.end_h is None else f" to {self.end_h / 24:.1f}")  # type: ignore[operator]
        return f"BBB breach: integrity down to {self.lowest:.2f} on day {self.lowest_h / 24:.1f} (mean < {self.threshold:g} {span})"


def crossed_into_cns(cell_type: str) -> bool:
    """Whether cells of ``cell_type`` in the CNS crossed the BBB (all but the CNS-resident types, e.g. microglia)."""
    cell = CATALOG.cell_types.get(cell_type)
    return cell is None or cell.home != "cns"


def state_name(cell_type: str, code: int, codes: Mapping[str, Mapping[int, str]] | None = None) -> str:
    """Name of agent state ``code`` of ``cell_type`` as a key of :data:`STATE_COLORS` (B cells' "alive" is "resting").

    ``codes``: the run file's state codes per cell type (default: the catalog's).
    """
    codes = CATALOG.state_codes() if codes is None else codes
    name = codes.get(cell_type, {}).get(int(code), "resting")
    return name if name in STATE_COLORS else "resting"


def state_colors(cell_type: str, states: np.ndarray, codes: Mapping[str, Mapping[int, str]] | None = None) -> np.ndarray:
    """RGB colours ``[n, 3]`` of cells of ``cell_type`` with agent ``states`` (codes of the HDF5 ``agents/state``)."""
    states = np.asarray(states).astype(np.int64).ravel()
    rgb = np.empty((len(states), 3), np.float32)
    for code in np.unique(states):
        rgb[states == code] = STATE_COLORS[state_name(cell_type, int(code), codes)]
    return rgb


def compartment_boxes(labels: np.ndarray | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Outline boxes ``(compartment, lo, hi)``: voxel-edge bounds (z, y, x) of each connected piece of each compartment.

    A piece is 6-connected; pieces under :data:`OUTLINE_MIN_VOXELS` voxels are skipped. The
    default layout gives a tissue block, the vessel through it, the brain-vessel slab, the BBB
    layer and the CNS.
    """
    if labels is None:
        return []
    from scipy import ndimage  # noqa: PLC0415

    boxes = []
    for name, code in COMPARTMENT_CODES.items():
        pieces, n = ndimage.label(labels == code)
        if n == 0:
            continue
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        for k, where in enumerate(ndimage.find_objects(pieces), start=1):
            if where is None or sizes[k] < OUTLINE_MIN_VOXELS:
                continue
            lo = np.array([sl.start for sl in where], np.float32)
            hi = np.array([sl.stop for sl in where], np.float32)
            boxes.append((name, lo, hi))
    return boxes


def camera_view(preset: str, shape: tuple[int, int, int], labels: np.ndarray | None) -> dict[str, object]:
    """Camera of a preset: ``center`` (x, y, z), ``distance``, ``elevation``, ``azimuth`` (turntable, degrees) and
    the ``x_range`` (voxels) a 2D view shows.

    ``whole``: the lattice, slightly from above; ``bbb``: a close-up of the BBB layer and its two
    sides (brain-vessel blood, CNS), looked at obliquely from the CNS side.
    """
    if preset not in CAMERA_PRESETS:
        raise ValueError(f"camera preset must be one of {', '.join(CAMERA_PRESETS)}; got {preset!r}")
    nz, ny, nx = shape
    if preset == "whole" or labels is None or not (labels == BBB_LABEL).any():
        return {"center": (nx / 2, ny / 2, nz / 2), "distance": 1.9 * max(nz, ny, nx), "elevation": 28.0, "azimuth": -35.0,
                "x_range": (0.0, float(nx))}  # fmt: skip
    xs = np.flatnonzero((labels == BBB_LABEL).any(axis=(0, 1)))
    half = max(4.0, 0.5 * ny, 1.5 * (xs[-1] + 1 - xs[0]))  # show some blood and CNS either side
    x0, x1 = max(0.0, float(xs[0]) - half), min(float(nx), float(xs[-1] + 1) + half)
    return {"center": ((xs[0] + xs[-1] + 1) / 2, ny / 2, nz / 2), "distance": 2.2 * max(nz, ny, x1 - x0), "elevation": 22.0,
            "azimuth": 60.0, "x_range": (x0, x1)}  # fmt: skip


def log_field(conc_pg_ml: np.ndarray) -> np.ndarray:
    """log10 of a concentration field, floored at :data:`CYTOKINE_FLOOR_PG_ML`."""
    return np.log10(np.maximum(np.asarray(conc_pg_ml, dtype=np.float32), CYTOKINE_FLOOR_PG_ML))


@dataclass
class Frame:
    """One snapshot ready to draw: positions in voxel units (z, y, x), fields [z, y, x]."""

    index: int
    time_h: float
    cells: dict[str, np.ndarray]  # cell type -> int32 [n, 3] (z, y, x)
    states: dict[str, np.ndarray]  # cell type -> agent state codes [n] (see carabm.io.hdf5.state_codes)
    cytokine_log: np.ndarray  # log10 pg/mL, float32 [z, y, x]
    bbb_voxels: np.ndarray  # int32 [m, 3] (z, y, x)
    bbb_integrity: np.ndarray  # float32 [m], 1 = intact
    overlay: str
    readouts: dict[str, float] = field(default_factory=dict)
    crossed: dict[str, np.ndarray] = field(default_factory=dict)  # cell type -> bool [n]: in the CNS (crossed the BBB)

    def crossed_positions(self) -> np.ndarray:
        """Positions ``int32 [k, 3]`` (z, y, x) of every cell that has crossed into the CNS."""
        parts = [self.cells[name][mask] for name, mask in self.crossed.items() if len(mask)]
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros((0, 3), np.int32)


class RunScene:
    """A run's snapshots as :class:`Frame` objects for one cytokine, with a shared colour range."""

    def __init__(self, path: str | Path, cytokine: str = "IL6"):
        self.path = Path(path)
        self.snapshots = Snapshots(self.path)
        if len(self.snapshots) == 0:
            raise InputFileError(f"{self.path}: the run has no snapshots to draw (set run.snapshot_every_h)")
        first = self.snapshots[0]
        if cytokine not in first["fields"]:
            raise InputFileError(f"{self.path}: no cytokine {cytokine!r} in the snapshots; choose one of {', '.join(sorted(first['fields']))}")
        self.cytokine = cytokine
        with open_read(self.path) as f:
            self.compartment = f["lattice/compartment"][()] if "lattice/compartment" in f else None
            #: the run's cell types (``type`` code order) and their state codes, as stored in the file
            self.state_codes = read_state_codes(f) or CATALOG.state_codes()
        self.cell_types = list(self.state_codes)
        self._load_plugins()
        self.shape: tuple[int, int, int] = tuple(int(n) for n in first["fields"][cytokine].shape)  # type: ignore[assignment]
        self._series = self._read_series()
        self.clim = self._colour_range()
        self.bbb_low, self._bbb_means = self._bbb_range()
        if "bbb_integrity" in self._series:
            self.breach = Breach.from_series(self._series["time_h"], self._series["bbb_integrity"])
        else:
            self.breach = Breach.from_series(self.times_h, self._bbb_means)

    def __len__(self) -> int:
        return len(self.snapshots)

    def _load_plugins(self) -> None:
        """Load the run's plug-ins (their cell types' colours); a plug-in that is not available leaves its cells grey."""
        if all(name in CATALOG.cell_types for name in self.cell_types):
            return
        try:
            config_from_text(read_config_text(self.path))  # loads the plug-ins the stored config names
        except CarabmError as exc:
            log.warning("%s: %s; cells of unknown types are drawn grey", self.path, exc)

    @property
    def times_h(self) -> np.ndarray:
        """Snapshot times [h]."""
        return self.snapshots.times_h

    def _read_series(self) -> dict[str, np.ndarray]:
        """Time series for the overlay (empty when the run has none yet)."""
        with open_read(self.path) as f:
            if "timeseries/time_h" not in f:
                return {}
            ts = f["timeseries"]
            series = {"time_h": ts["time_h"][()]}
            for key, name in (("crs_grade", "crs_grade"), ("icans_grade", "icans_grade"), ("serum_IL6", "serum/IL6"),
                              ("bbb_integrity", "bbb_integrity"), ("cns_infiltrate", "cns_infiltrate")):  # fmt: skip
                if name in ts:
                    series[key] = ts[name][()]
        return series

    def _colour_range(self) -> tuple[float, float]:
        """log10 colour range over the first, middle and last snapshots (so all frames share it)."""
        picks = sorted({0, len(self) // 2, len(self) - 1})
        highs = [float(log_field(self.snapshots[i]["fields"][self.cytokine]).max()) for i in picks]
        low = float(np.log10(CYTOKINE_FLOOR_PG_ML))
        return low, max(max(highs), low + 1.0)

    def _bbb_range(self) -> tuple[float, np.ndarray]:
        """The low end of the BBB colour scale (the lowest integrity of any BBB voxel in any snapshot, or
        :data:`BREACH_INTEGRITY` if that is lower) and the mean BBB integrity of each snapshot."""
        if self.compartment is None or not (self.compartment == BBB_LABEL).any():
            return BREACH_INTEGRITY, np.ones(len(self))
        on_bbb = self.compartment == BBB_LABEL
        lows, means = [], []
        for i in range(len(self)):
            integrity = self.snapshots[i]["bbb_integrity"]
            values = integrity[on_bbb] if integrity is not None else np.ones(1, np.float32)
            lows.append(float(values.min()))
            means.append(float(values.mean()))
        return min(min(lows), BREACH_INTEGRITY), np.asarray(means)

    def breached_snapshots(self) -> np.ndarray:
        """Whether the BBB is breached (see :class:`Breach`) at each snapshot, ``bool [n]``."""
        return np.array([self.breach.covers(float(t)) for t in self.times_h], dtype=bool)

    def bbb_colors(self, frame: Frame) -> np.ndarray:
        """RGB ``[m, 3]`` of ``frame``'s BBB voxels on this run's scale (:attr:`bbb_low` red .. 1 blue)."""
        return bbb_color(frame.bbb_integrity, self.bbb_low)

    def bbb_scale_text(self) -> str:
        """The BBB colour scale in words."""
        return f"BBB integrity {self.bbb_low:.2f} (red) .. 1 (blue, intact)"

    def readouts_at(self, time_h: float) -> dict[str, float]:
        """CRS, ICANS grade and serum IL-6 at the last time-series row at or before ``time_h``."""
        if not self._series:
            return {}
        row = int(np.searchsorted(self._series["time_h"], time_h + 1e-9, side="right")) - 1
        row = min(max(row, 0), len(self._series["time_h"]) - 1)
        return {k: float(v[row]) for k, v in self._series.items() if k != "time_h"}

    def overlay_text(self, time_h: float, readouts: dict[str, float], bbb_now: tuple[float, float] | None = None,
                     crossed: int | None = None) -> str:  # fmt: skip
        """Overlay lines: day/hour, CRS and ICANS grade (model surrogate), serum IL-6, the BBB now
        (``bbb_now``: mean and min integrity; BREACHED while the breach lasts; ``crossed``: cells in the CNS),
        and the run's breach (:meth:`Breach.text`)."""
        day, hour = int(time_h // 24), time_h - 24 * int(time_h // 24)
        lines = [f"day {day} {hour:04.1f} h  (t = {time_h:.1f} h)"]
        if readouts:
            lines.append(f"CRS grade {readouts.get('crs_grade', float('nan')):.0f}   ICANS grade "
                         f"{readouts.get('icans_grade', float('nan')):.0f}   (model surrogate)")  # fmt: skip
            if "serum_IL6" in readouts:
                lines.append(f"serum IL-6 {readouts['serum_IL6']:.3g} pg/mL")
        if bbb_now is not None:
            line = f"BBB now: mean {bbb_now[0]:.3f}, min {bbb_now[1]:.3f}"
            if self.breach.covers(time_h):
                line += "  BREACHED"
            if crossed is not None:
                line += f"   {crossed} cells crossed into CNS"
            lines.append(line)
        lines.append(self.breach.text())
        return "\n".join(lines)

    def frame(self, i: int) -> Frame:
        """Read snapshot ``i`` as a :class:`Frame`."""
        snap = self.snapshots[i]
        agents = snap["agents"]
        positions = np.asarray(agents.get("position", np.zeros((0, 3), np.int32)), dtype=np.int32).reshape(-1, 3)
        types = np.asarray(agents.get("type", np.zeros(0, np.uint8)))
        states = np.asarray(agents.get("state", np.zeros(len(types), np.uint8))).ravel()
        if len(states) != len(types):
            states = np.zeros(len(types), np.uint8)
        cells = {name: positions[types == code] for code, name in enumerate(self.cell_types)}
        cell_states = {name: states[types == code] for code, name in enumerate(self.cell_types)}
        integrity = snap["bbb_integrity"]
        if self.compartment is not None:
            bbb_voxels = np.argwhere(self.compartment == BBB_LABEL).astype(np.int32)
        else:
            bbb_voxels = np.zeros((0, 3), np.int32)
        if integrity is not None and len(bbb_voxels):
            bbb_values = integrity[bbb_voxels[:, 0], bbb_voxels[:, 1], bbb_voxels[:, 2]].astype(np.float32)
        else:
            bbb_values = np.ones(len(bbb_voxels), np.float32)
        readouts = self.readouts_at(snap["time_h"])
        crossed = {name: self._in_cns(cells[name]) if crossed_into_cns(name) else np.zeros(len(cells[name]), bool) for name in cells}
        bbb_now = (float(bbb_values.mean()), float(bbb_values.min())) if len(bbb_values) else None
        overlay = self.overlay_text(snap["time_h"], readouts, bbb_now, int(sum(int(m.sum()) for m in crossed.values())))
        return Frame(index=i, time_h=snap["time_h"], cells=cells, states=cell_states, cytokine_log=log_field(snap["fields"][self.cytokine]),
                     bbb_voxels=bbb_voxels, bbb_integrity=bbb_values, overlay=overlay, readouts=readouts, crossed=crossed)  # fmt: skip

    def _in_cns(self, positions: np.ndarray) -> np.ndarray:
        """Whether each position (z, y, x) lies in the CNS compartment."""
        if self.compartment is None or not len(positions):
            return np.zeros(len(positions), bool)
        return self.compartment[positions[:, 0], positions[:, 1], positions[:, 2]] == COMPARTMENT_CODES["cns"]

    def cell_colors(self, frame: Frame, cell_type: str, color_by: str = "type") -> np.ndarray:
        """RGB ``[n, 3]`` of ``frame``'s cells of ``cell_type``: one colour by type, or one per agent state."""
        n = len(frame.cells.get(cell_type, ()))
        if color_by == "state":
            return state_colors(cell_type, frame.states.get(cell_type, np.zeros(n, np.uint8)), self.state_codes)
        if color_by != "type":
            raise ValueError(f"color_by must be one of {', '.join(COLOR_BY)}; got {color_by!r}")
        return np.tile(np.asarray(CELL_COLORS.get(cell_type, UNKNOWN_CELL_COLOR), np.float32), (n, 1))

    def outline_boxes(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Compartment outline boxes of this run (see :func:`compartment_boxes`), computed once."""
        if not hasattr(self, "_boxes"):
            self._boxes = compartment_boxes(self.compartment)
        return self._boxes

    def camera(self, preset: str = "whole") -> dict[str, object]:
        """Camera of ``preset`` for this run's lattice (see :func:`camera_view`)."""
        return camera_view(preset, self.shape, self.compartment)

    def legend_lines(self, color_by: str = "type") -> list[tuple[str, tuple[float, float, float]]]:
        """Legend entries (text, RGB): cell types (or states), the BBB, then the compartment outlines."""
        if color_by == "state":
            entries = [(f"{name} cells" if name != "resting" else "resting / B cell", rgb) for name, rgb in STATE_COLORS.items()]
        else:
            entries = [(name, CELL_COLORS.get(name, UNKNOWN_CELL_COLOR)) for name in self.cell_types]
        entries.append(("BBB intact (1)", BBB_INTACT))
        entries.append((f"BBB at {self.bbb_low:.2f}", BBB_BREACHED))
        entries.append(("ring: crossed into CNS", CROSSED_COLOR))
        present = {name for name, _lo, _hi in self.outline_boxes()}
        entries.extend((f"{name} outline", COMPARTMENT_COLORS[name]) for name in COMPARTMENT_COLORS if name in present)
        return entries

    def colour_scale_text(self) -> str:
        """The cytokine colour scale in words (log10 pg/mL range)."""
        low, high = self.clim
        return f"{self.cytokine} pg/mL, log scale {10**low:.2g} .. {10**high:.2g} ({CYTOKINE_CMAP})"
