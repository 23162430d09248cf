"""``carabm report``: a summary table (CSV and Markdown) and PNG plots of one or more runs.

Owns :func:`summarize` (the numbers of one run), :func:`report` (table + plots of several
runs overlaid) and the plot helpers. Grades are model surrogates and labelled so.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from carabm.errors import InputFileError
from carabm.io.catalog import CATALOG
from carabm.io.runfile import check_run_file, open_read, read_events
from carabm.io.summary import config_tumour_cells, tumour_response

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
    units: dict[str, str] = field(default_factory=dict)
    tumour_cells: float | None = None  #: the patient's tumour at the start (``patient.tumor_burden_cells``), None: unknown

    def get(self, name: str) -> np.ndarray | None:
        """A column by its name under ``timeseries/`` (e.g. ``serum/IL6``), or None."""
        return self.columns.get(name)


def read_series(path: str | Path, label: str | None = None) -> RunSeries:
    """Read a run's time series and therapy events (after :func:`check_run_file`)."""
    path = Path(path)
    check_run_file(path)
    columns: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    with open_read(path) as f:
        time_h = f["timeseries/time_h"][()]

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name != "time_h":
                columns[name] = obj[()]
                units[name] = _text(obj.attrs.get("units", ""))

        f["timeseries"].visititems(visit)
        events = _read_events(f)
        tumour_cells = config_tumour_cells(f["config"][()]) if "config" in f else None
        status = f.attrs.get("status", "")
        status = status.decode() if isinstance(status, bytes) else str(status)
    n = min([len(time_h)] + [len(v) for v in columns.values()])
    if n == 0:
        raise InputFileError(f"{path}: the time series is empty (the run stopped before its first flush)")
    columns = {k: np.asarray(v[:n]) for k, v in columns.items()}
    return RunSeries(path, label or path.stem, np.asarray(time_h[:n], dtype=np.float64), columns, events, status, units, tumour_cells)


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
    for name in _parts([series], "serum"):
        values = series.get(f"serum/{name}")
        out[f"peak_serum_{name}_pg_ml"] = float(np.max(values)) if values is not None else None
    for grade in ("crs", "icans"):
        values = series.get(f"{grade}_grade")
        if values is None:
            continue
        out[f"max_{grade}_grade"] = int(np.max(values))
        out[f"{grade}_onset_day_grade_ge1"] = _first_time_day(t, values >= 1)
        out[f"{grade}_onset_day_grade_ge2"] = _first_time_day(t, values >= 2)
    cart = series.get("cells/cart")
    if cart is None:  # files from before weighted agents have agent counts only (one cell each)
        cart = series.get("counts/cart")
    if cart is not None:
        i = int(np.argmax(cart))
        out["cart_peak_count"] = float(cart[i])
        out["cart_peak_day"] = float(t[i] / HOURS_PER_DAY)
    burden = series.get("tumor_burden")
    if burden is not None:
        out["bcells_cleared_day"] = _first_time_day(t, burden <= 0)
        response = tumour_response(t, burden, series.tumour_cells)
        out["response_end"] = response.end
        out["response_best"] = response.best
        out["tumour_end_fraction"] = response.end_fraction
        out["complete_response"] = None if response.end == "NE" else int(response.end == "CR")  # the trial table's statistic
    out["therapy_events"] = len(series.events)
    return out


#: how summary keys are shown in the table: (key, label)
def _table_rows(summaries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = [("status", "status"), ("simulated_days", "simulated days")]
    peaks = dict.fromkeys(k for s in summaries for k in s if k.startswith("peak_serum_") and k.endswith("_pg_ml"))
    rows += [(k, f"peak serum {k.removeprefix('peak_serum_').removesuffix('_pg_ml')} [pg/mL]") for k in peaks]
    rows += [
        ("max_crs_grade", f"max CRS grade ({SURROGATE})"), ("crs_onset_day_grade_ge1", "CRS onset, grade >= 1 [day]"),
        ("crs_onset_day_grade_ge2", "CRS onset, grade >= 2 [day]"), ("max_icans_grade", f"max ICANS grade ({SURROGATE})"),
        ("icans_onset_day_grade_ge1", "ICANS onset, grade >= 1 [day]"), ("icans_onset_day_grade_ge2", "ICANS onset, grade >= 2 [day]"),
        ("cart_peak_count", "CAR-T peak [cells]"), ("cart_peak_day", "CAR-T peak [day]"),
        ("bcells_cleared_day", "B cells cleared [day]"), ("response_end", f"response at the end ({SURROGATE} of Lugano)"),
        ("response_best", f"best response ({SURROGATE})"), ("tumour_end_fraction", "tumour at the end / start"),
        ("therapy_events", "therapy administrations"),
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
    for key, label in _table_rows(summaries):
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

def cell_name(name: str) -> str:
    """How a cell type is named in plot titles: its catalog ``long_name`` (the name itself when not registered)."""
    cell = CATALOG.cell_types.get(name)
    return cell.long_name if cell is not None else name


def _parts(runs: list[RunSeries], group: str) -> list[str]:
    """The names after ``group/`` among the runs' time-series columns (``counts`` -> cell types), in catalog order
    (cell types, cytokines), names the catalog does not know last."""
    names = dict.fromkeys(k.split("/", 1)[1] for r in runs for k in r.columns if k.startswith(f"{group}/"))
    known = list(CATALOG.cell_types) + list(CATALOG.cytokines)
    return sorted(names, key=lambda name: known.index(name) if name in known else len(known))

#: units of time-series groups when a file carries no ``units`` attribute
DEFAULT_UNITS = {"drug": "µg/mL", "drug_cns": "µg/mL", "blood_per_ul": "cells/µL", "counts": "cells"}
#: log axes show at most this many decades below the largest value (a cleared cytokine's tail would flatten the rest)
LOG_DECADES = 6.0


def _figure(n_panels: int, title: str) -> tuple[Any, list[Any]]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    # constrained layout makes room for every title, tick label and the legend: no label is clipped
    fig = Figure(figsize=(4.4 * cols, 3.2 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, flat[:n_panels]


def _events(ax: Any, runs: list[RunSeries], colours: list[Any], drug: str | None = None) -> None:
    for run, colour in zip(runs, colours):
        for event in run.events:
            if "time_h" in event and (drug is None or event.get("drug") == drug):
                ax.axvline(float(event["time_h"]) / HOURS_PER_DAY, color=colour, linestyle=":", linewidth=1.0, alpha=0.8)


def _event_text(event: dict[str, Any], with_dose: bool) -> str:
    text = str(event.get("drug", "therapy"))
    dose = event.get("dose_mg", event.get("dose"))
    if with_dose and isinstance(dose, (int, float)) and math.isfinite(dose):
        text += f" {dose:.3g} mg"
    return text


def _annotate_events(ax: Any, runs: list[RunSeries], drug: str | None = None, with_dose: bool = False) -> None:
    for run in runs:
        for event in run.events:
            if "time_h" in event and "drug" in event and (drug is None or event["drug"] == drug):
                ax.annotate(_event_text(event, with_dose), (float(event["time_h"]) / HOURS_PER_DAY, 0.98),
                            xycoords=("data", "axes fraction"), rotation=90, fontsize=7, va="top", ha="right", color="0.3",
                            annotation_clip=True)  # fmt: skip


def _with_legend(fig: Any, runs: list[RunSeries]) -> Any:
    """Add the legend of several runs below the panels (constrained layout places it when drawn)."""
    handles, labels = [], []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if handles and len(runs) > 1:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _colours(n: int) -> list[Any]:
    import matplotlib  # noqa: PLC0415

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _tick_text(value: float, _pos: Any = None) -> str:
    """A log tick as a plain number between 0.001 and 99 999 (``0.01``, ``5``, ``20 000``), else ``1e+06``."""
    if value <= 0:
        return ""
    if 1e-3 <= value < 1e5:
        return f"{value:.3g}" if value < 1 else f"{value:,.0f}"
    return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")


def _log_axis(ax: Any, low: float, high: float) -> None:
    """Log y axis from ``low`` to ``high`` (at most :data:`LOG_DECADES` below ``high``) with plain-number ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: PLC0415

    ax.set_yscale("log")
    low = max(low, high / 10**LOG_DECADES)
    pad = 1.15 if high < 30 * low else 1.5
    ax.set_ylim(low / pad, high * pad)
    if high < 3 * low:  # a narrow range: label every 1..9 x 10^k, or at most one tick would fall inside
        ax.yaxis.set_major_locator(LogLocator(subs=tuple(range(1, 10)), numticks=12))
    elif high < 30 * low:  # within about a decade: label 1, 2, 5 x 10^k
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
    else:
        ax.yaxis.set_major_locator(LogLocator(numticks=5))
    ax.yaxis.set_major_formatter(FuncFormatter(_tick_text))
    ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds per figure


def _plot_lines(ax: Any, runs: list[RunSeries], colours: list[Any], column: str, log: bool, grade: bool = False,
                style: str = "-", label: str | None = None) -> tuple[float, float]:  # fmt: skip
    """Draw ``column`` of every run on ``ax``; returns the (min, max) of the positive values drawn."""
    span = (np.inf, 0.0)
    for run, colour in zip(runs, colours):
        values = run.get(column)
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float64)
        if log:  # zeros (and the 1e-90 tails of cleared cytokines) would flatten a log axis
            values = np.where(values > LOG_FLOOR, values, np.nan)
            if np.isfinite(values).any():
                span = (min(span[0], float(np.nanmin(values))), max(span[1], float(np.nanmax(values))))
        ax.plot(run.time_h / HOURS_PER_DAY, values, color=colour, label=label or run.label, linewidth=1.4, linestyle=style,
                drawstyle="steps-post" if grade else "default")  # fmt: skip
    return span


def _finish_axes(axes: list[Any], runs: list[RunSeries]) -> None:
    last_day = max(float(r.time_h[-1]) for r in runs) / HOURS_PER_DAY
    for ax in axes:
        ax.set_xlabel("day after infusion", fontsize=8)
        ax.set_xlim(0, max(last_day, 1e-3))
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)


def _panels(runs: list[RunSeries], names: list[tuple[str, str, str]], title: str, log: bool, grade: bool = False) -> Any:
    """A figure with one panel per ``(column, panel title, y label)``, runs overlaid, therapy events marked."""
    colours = _colours(len(runs))
    fig, axes = _figure(len(names), title)
    for ax, (column, panel_title, ylabel) in zip(axes, names):
        low, high = _plot_lines(ax, runs, colours, column, log, grade)
        _events(ax, runs, colours)
        if grade:
            ax.set_ylim(-0.2, 4.2)
            ax.set_yticks(range(5))
        if log and high > 0:
            _log_axis(ax, low, high)
        elif log:
            ax.text(0.5, 0.5, "zero throughout", transform=ax.transAxes, ha="center", va="center", color="0.5")
        ax.set_title(panel_title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
    _finish_axes(axes, runs)
    if len(axes):
        _annotate_events(axes[0], runs)
    return _with_legend(fig, runs)


def display_units(units: str) -> str:
    """Units for an axis label: UDUNITS ``ug mL-1`` -> ``µg/mL``, ``uL-1`` -> ``cells/µL`` (schema-1 ``ug/mL`` -> ``µg/mL``)."""
    units = units.strip()
    if units == "uL-1":
        return "cells/µL"
    match = re.fullmatch(r"(\S+) (\S+)-1", units)
    if match:
        units = f"{match[1]}/{match[2]}"
    return re.sub(r"\bu(g|L|m)\b", r"µ\1", units)


def _units(runs: list[RunSeries], column: str) -> str:
    for run in runs:
        units = run.units.get(column)
        if units:
            return display_units(units)
    return DEFAULT_UNITS.get(column.split("/", 1)[0], "")


def figure_counts(runs: list[RunSeries]) -> Any:
    """Simulated cells (agents: lattice + its blood pool) per type and patient-scale blood counts (cells/µL); log axes."""
    names = [(f"counts/{c}", f"{cell_name(c)} (agents)", "agents: lattice + blood pool") for c in _parts(runs, "counts")]
    names += [(f"blood_per_ul/{c}", f"{cell_name(c)} in blood (cells/µL)", "cells/µL of blood (patient)") for c in _parts(runs, "blood_per_ul")]
    return _panels(runs, names, "Cell counts: simulated agents (lattice + its blood pool) and patient-scale blood counts", log=True)


def figure_cytokines(runs: list[RunSeries], where: str) -> Any:
    """Serum or CNS cytokines, one panel each (log axis)."""
    title = "Serum cytokines (patient blood)" if where == "serum" else "CNS cytokines (mean over the lattice's CNS voxels)"
    return _panels(runs, [(f"{where}/{c}", c, "pg/mL") for c in _parts(runs, where)], title, log=True)


def figure_drugs(runs: list[RunSeries]) -> Any:
    """Drug levels, one panel per drug: plasma (solid) and CNS (dashed), log axis, administrations marked."""
    drugs = list(dict.fromkeys(k.split("/", 1)[1] for r in runs for k in r.columns if k.startswith("drug/")))
    colours = _colours(len(runs))
    fig, axes = _figure(max(1, len(drugs)), "Drug levels\nplasma (solid), CNS (dashed), doses (dotted)")
    if not drugs:
        axes[0].text(0.5, 0.5, "no drug given in " + ("this run" if len(runs) == 1 else "these runs"), transform=axes[0].transAxes,
                     ha="center", va="center", color="0.4")  # fmt: skip
        axes[0].set_yticks([])
    for ax, drug in zip(axes, drugs):
        low, high = _plot_lines(ax, runs, colours, f"drug/{drug}", log=True)
        cns = _plot_lines(ax, runs, colours, f"drug_cns/{drug}", log=True, style="--", label="_cns")
        low, high = min(low, cns[0]), max(high, cns[1])
        _events(ax, runs, colours, drug)
        _annotate_events(ax, runs, drug, with_dose=True)
        if high > 0:
            _log_axis(ax, low, high)
        ax.set_title(drug, fontsize=10)
        ax.set_ylabel(f"concentration [{_units(runs, f'drug/{drug}')}]", fontsize=8)
    _finish_axes(axes, runs)
    return _with_legend(fig, runs)


def figure_bbb(runs: list[RunSeries]) -> Any:
    """Mean BBB integrity."""
    return _panels(runs, [("bbb_integrity", "BBB integrity (1 = intact)", "mean over BBB voxels")], "Blood-brain barrier", log=False)


def figure_grades(runs: list[RunSeries]) -> Any:
    """CRS and ICANS grades (model surrogates)."""
    return _panels(runs, [("crs_grade", f"CRS grade ({SURROGATE})", "grade"), ("icans_grade", f"ICANS grade ({SURROGATE})", "grade")],
                   f"CRS and ICANS grades: {SURROGATE}s, not a clinical assessment", log=False, grade=True)  # fmt: skip


def figures(runs: list[RunSeries]) -> dict[str, Any]:
    """Every report figure by its PNG file name (matplotlib ``Figure`` objects, laid out)."""
    return {
        "cell_counts.png": figure_counts(runs), "serum_cytokines.png": figure_cytokines(runs, "serum"),
        "cns_cytokines.png": figure_cytokines(runs, "cns"), "drug_levels.png": figure_drugs(runs),
        "bbb_integrity.png": figure_bbb(runs), "grades.png": figure_grades(runs),
    }  # fmt: skip


def clipped_texts(fig: Any) -> list[str]:
    """What of ``fig`` is drawn (partly) outside it: a panel's title or y label for its titles, labels and tick
    labels, or the texts and legends of the figure itself; ``[]`` when nothing is clipped."""
    fig.canvas.draw()  # applies the constrained layout
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox.padded(0.5)

    def outside(box: Any) -> bool:
        return box.x0 < inside.x0 or box.y0 < inside.y0 or box.x1 > inside.x1 or box.y1 > inside.y1

    out = [ax.get_title() or ax.get_ylabel() or "a panel" for ax in fig.axes if ax.get_visible() and outside(ax.get_tightbbox(renderer))]
    for artist in [*fig.texts, *fig.legends, *([fig._suptitle] if fig._suptitle is not None else [])]:
        if artist.get_visible() and outside(artist.get_window_extent(renderer)):
            out.append(artist.get_text() if hasattr(artist, "get_text") else "legend")
    return out


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
    written += [_save(fig, out / name) for name, fig in figures(runs).items()]
    return Report(summaries, f"{table}\n\n{note}", written)
