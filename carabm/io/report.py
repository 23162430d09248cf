"""``carabm report``: a summary table (CSV and Markdown) and PNG plots of one or more runs.

Owns :func:`summarize` (the numbers of one run), :func:`report` (table + plots of several
runs overlaid) and the plot helpers. Grades are model surrogates and labelled so.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from carabm.errors import InputFileError
from carabm.io.config import CELL_TYPES, CYTOKINES
from carabm.io.hdf5 import check_run_file, open_read, read_events

HOURS_PER_DAY = 24.0
SURROGATE = "model surrogate"
#: values at or below this are not drawn on log axes (pg/mL or cells)
LOG_FLOOR = 1e-3


@dataclass
class RunSeries:
    """The time series of one run, as NumPy arrays (rows cut to the shortest column)."""

    path: Path
    label: str
    time_h: np.ndarray
    columns: dict[str, np.ndarray]
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""

    def get(self, name: str) -> np.ndarray | None:
        """A column by its name under ``timeseries/`` (e.g. ``serum/IL6``), or None."""
        return self.columns.get(name)


def read_series(path: str | Path, label: str | None = None) -> RunSeries:
    """Read a run's time series and therapy events (after :func:`check_run_file`)."""
    path = Path(path)
    check_run_file(path)
    columns: dict[str, np.ndarray] = {}
    with open_read(path) as f:
        time_h = f["timeseries/time_h"][()]

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name != "time_h":
                columns[name] = obj[()]

        f["timeseries"].visititems(visit)
        events = _read_events(f)
        status = f.attrs.get("status", "")
        status = status.decode() if isinstance(status, bytes) else str(status)
    n = min([len(time_h)] + [len(v) for v in columns.values()])
    if n == 0:
        raise InputFileError(f"{path}: the time series is empty (the run stopped before its first flush)")
    columns = {k: np.asarray(v[:n]) for k, v in columns.items()}
    return RunSeries(path, label or path.stem, np.asarray(time_h[:n], dtype=np.float64), columns, events, status)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_events(f: h5py.File) -> list[dict[str, Any]]:
    """``therapy/events`` as dicts with ``time_h`` and ``drug`` (compound dataset or group of columns)."""
    if "therapy/events" not in f:
        return []
    node = f["therapy/events"]
    if isinstance(node, h5py.Dataset) and node.dtype.names:
        data = node[()]
        return [{name: (_text(row[name]) if data.dtype[name].kind in "SOU" else row[name].item()) for name in data.dtype.names} for row in data]
    return read_events(f)  # a group of columns (schema 1 and 2)


# --------------------------------------------------------------------------- summary numbers


def _first_time_day(time_h: np.ndarray, mask: np.ndarray) -> float | None:
    hits = np.flatnonzero(mask)
    return float(time_h[hits[0]] / HOURS_PER_DAY) if hits.size else None


def summarize(series: RunSeries) -> dict[str, Any]:
    """Headline numbers of one run: peaks, max grades with onset days, CAR-T peak, B-cell clearance."""
    t = series.time_h
    out: dict[str, Any] = {"run": series.label, "file": str(series.path), "status": series.status,
                           "simulated_days": float(t[-1] / HOURS_PER_DAY)}  # fmt: skip
    for name in CYTOKINES:
        values = series.get(f"serum/{name}")
        out[f"peak_serum_{name}_pg_ml"] = float(np.max(values)) if values is not None else None
    for grade in ("crs", "icans"):
        values = series.get(f"{grade}_grade")
        if values is None:
            continue
        out[f"max_{grade}_grade"] = int(np.max(values))
        out[f"{grade}_onset_day_grade_ge1"] = _first_time_day(t, values >= 1)
        out[f"{grade}_onset_day_grade_ge2"] = _first_time_day(t, values >= 2)
    cart = series.get("counts/cart")
    if cart is not None:
        i = int(np.argmax(cart))
        out["cart_peak_count"] = int(cart[i])
        out["cart_peak_day"] = float(t[i] / HOURS_PER_DAY)
    burden = series.get("tumor_burden")
    if burden is not None:
        out["bcells_cleared_day"] = _first_time_day(t, burden <= 0)
    out["therapy_events"] = len(series.events)
    return out


#: how summary keys are shown in the table: (key, label)
def _table_rows() -> list[tuple[str, str]]:
    rows = [("status", "status"), ("simulated_days", "simulated days")]
    rows += [(f"peak_serum_{c}_pg_ml", f"peak serum {c} [pg/mL]") for c in CYTOKINES]
    rows += [
        ("max_crs_grade", f"max CRS grade ({SURROGATE})"), ("crs_onset_day_grade_ge1", "CRS onset, grade >= 1 [day]"),
        ("crs_onset_day_grade_ge2", "CRS onset, grade >= 2 [day]"), ("max_icans_grade", f"max ICANS grade ({SURROGATE})"),
        ("icans_onset_day_grade_ge1", "ICANS onset, grade >= 1 [day]"), ("icans_onset_day_grade_ge2", "ICANS onset, grade >= 2 [day]"),
        ("cart_peak_count", "CAR-T peak [cells]"), ("cart_peak_day", "CAR-T peak [day]"),
        ("bcells_cleared_day", "B cells cleared [day]"), ("therapy_events", "therapy administrations"),
    ]  # fmt: skip
    return rows


def _format(key: str, value: Any) -> str:
    if value is None:
        if key == "bcells_cleared_day":
            return "not cleared"
        if "onset" in key:
            return "never"
        return "n/a"
    if isinstance(value, float):
        if "day" in key:
            return f"{value:.2f}"
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per quantity, one column per run."""
    header = "| quantity | " + " | ".join(s["run"] for s in summaries) + " |"
    lines = [header, "|" + "---|" * (len(summaries) + 1)]
    for key, label in _table_rows():
        lines.append(f"| {label} | " + " | ".join(_format(key, s.get(key)) for s in summaries) + " |")
    return "\n".join(lines)


def write_csv(path: Path, summaries: list[dict[str, Any]]) -> None:
    """One row per run, one column per summary key (empty for never/not cleared)."""
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        for s in summaries:
            writer.writerow({k: ("" if s.get(k) is None else s.get(k)) for k in keys})


# --------------------------------------------------------------------------- plots


def _figure(n_panels: int, title: str) -> tuple[Any, list[Any]]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, flat[:n_panels]


def _events(ax: Any, runs: list[RunSeries], colours: list[Any]) -> None:
    for run, colour in zip(runs, colours):
        for event in run.events:
            if "time_h" in event:
                ax.axvline(float(event["time_h"]) / HOURS_PER_DAY, color=colour, linestyle=":", linewidth=1.0, alpha=0.8)


def _annotate_events(ax: Any, runs: list[RunSeries]) -> None:
    for run in runs:
        for event in run.events:
            if "time_h" in event and "drug" in event:
                ax.annotate(str(event["drug"]), (float(event["time_h"]) / HOURS_PER_DAY, 1.0), xycoords=("data", "axes fraction"),
                            rotation=90, fontsize=7, va="top", ha="right", color="0.3")  # fmt: skip


def _save(fig: Any, path: Path, runs: list[RunSeries]) -> Path:
    handles, labels = [], []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    legend = len(runs) > 1 and bool(handles)
    if legend:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    # fixed margins instead of tight_layout: a third of the time, same look for these grids
    inches_w, inches_h = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / inches_w, right=1 - 0.2 / inches_w, top=1 - 0.75 / inches_h,
                        bottom=(0.95 if legend else 0.6) / inches_h, wspace=0.35, hspace=0.55)  # fmt: skip
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)
    return path


def _colours(n: int) -> list[Any]:
    import matplotlib  # noqa: PLC0415

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _panels(runs: list[RunSeries], names: list[tuple[str, str]], title: str, ylabel: str, path: Path, log: bool, grade: bool = False) -> Path:
    colours = _colours(len(runs))
    fig, axes = _figure(len(names), title)
    for ax, (column, panel_title) in zip(axes, names):
        positive, span = False, (np.inf, 0.0)
        for run, colour in zip(runs, colours):
            values = run.get(column)
            if values is None:
                continue
            values = np.asarray(values, dtype=np.float64)
            if log:  # zeros (and the 1e-90 tails of cleared cytokines) would flatten a log axis
                values = np.where(values > LOG_FLOOR, values, np.nan)
                if np.isfinite(values).any():
                    positive = True
                    span = (min(span[0], float(np.nanmin(values))), max(span[1], float(np.nanmax(values))))
            ax.plot(run.time_h / HOURS_PER_DAY, values, color=colour, label=run.label, linewidth=1.4,
                    drawstyle="steps-post" if grade else "default")  # fmt: skip
        _events(ax, runs, colours)
        if grade:
            ax.set_ylim(-0.2, 4.2)
            ax.set_yticks(range(5))
        if positive:
            from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullLocator  # noqa: PLC0415

            ax.set_yscale("log")
            if span[1] < 30 * span[0]:  # within about a decade: label 1, 2, 5 x 10^k, or no tick may fall inside
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
                ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(np.inf, np.inf)))
            else:
                ax.yaxis.set_major_locator(LogLocator(numticks=6))
            ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds per figure
        elif log:
            ax.text(0.5, 0.5, "zero throughout", transform=ax.transAxes, ha="center", va="center", color="0.5")
        ax.set_title(panel_title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, alpha=0.3)
    last_day = max(float(r.time_h[-1]) for r in runs) / HOURS_PER_DAY
    for ax in axes:
        ax.set_xlabel("day after infusion", fontsize=8)
        ax.set_xlim(0, max(last_day, 1e-3))
    if len(axes):
        _annotate_events(axes[0], runs)
    return _save(fig, path, runs)


def plot_counts(runs: list[RunSeries], path: Path) -> Path:
    """Cell counts per type (log axis)."""
    names = [(f"counts/{c}", c) for c in CELL_TYPES]
    return _panels(runs, names, "Cell counts (lattice + blood pool)", "cells", path, log=True)


def plot_cytokines(runs: list[RunSeries], where: str, path: Path) -> Path:
    """Serum or CNS cytokines, one panel each (log axis)."""
    title = "Serum cytokines" if where == "serum" else "CNS cytokines (mean over CNS voxels)"
    return _panels(runs, [(f"{where}/{c}", c) for c in CYTOKINES], title, "pg/mL", path, log=True)


def plot_bbb(runs: list[RunSeries], path: Path) -> Path:
    """Mean BBB integrity."""
    return _panels(runs, [("bbb_integrity", "BBB integrity (1 = intact)")], "Blood-brain barrier", "mean integrity", path, log=False)


def plot_grades(runs: list[RunSeries], path: Path) -> Path:
    """CRS and ICANS grades (model surrogates)."""
    path = _panels(runs, [("crs_grade", f"CRS grade ({SURROGATE})"), ("icans_grade", f"ICANS grade ({SURROGATE})")],
                   f"CRS and ICANS grades — {SURROGATE}, not a clinical assessment", "grade", path, log=False, grade=True)  # fmt: skip
    return path


@dataclass
class Report:
    """What :func:`report` produced: summaries, the Markdown table and the files written."""

    summaries: list[dict[str, Any]]
    markdown: str
    written: list[Path]


def _labels(paths: list[Path]) -> list[str]:
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def report(files: list[str | Path], out: str | Path = "report") -> Report:
    """Summarize runs: ``summary.csv``, ``summary.md`` and PNG plots in ``out`` (created)."""
    paths = [Path(p) for p in files]
    for path in paths:
        check_run_file(path)
    runs = [read_series(p, label) for p, label in zip(paths, _labels(paths))]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a folder; give --out a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(r) for r in runs]
    table = markdown_table(summaries)
    note = f"Grades are {SURROGATE}s of the ASTCT CRS and ICANS grades, not clinical assessments."
    (out / "summary.md").write_text(f"# carabm report\n\n{table}\n\n{note}\n")
    write_csv(out / "summary.csv", summaries)
    written = [out / "summary.csv", out / "summary.md"]
    written.append(plot_counts(runs, out / "cell_counts.png"))
    written.append(plot_cytokines(runs, "serum", out / "serum_cytokines.png"))
    written.append(plot_cytokines(runs, "cns", out / "cns_cytokines.png"))
    written.append(plot_bbb(runs, out / "bbb_integrity.png"))
    written.append(plot_grades(runs, out / "grades.png"))
    return Report(summaries, f"{table}\n\n{note}", written)
