"""The end-of-run summary a clinician-scientist reads first, computed from a run file's time series.

Owns :func:`run_summary` (the numbers, as a :class:`RunSummary`),
:meth:`RunSummary.text` (the lines ``carabm run`` and ``carabm report`` print) and
:func:`tumour_response` (the response category). Grades are model surrogates of the ASTCT
grades, and the response a model surrogate of the Lugano categories; both are labelled so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from carabm.errors import InputFileError
from carabm.io.checkpoint import checkpoint_path
from carabm.io.runfile import check_run_file, open_read
from carabm.io.xdmf import xdmf_path

HOURS_PER_DAY = 24.0
#: the time-series columns the summary reads (HDF5 names under ``timeseries/``)
COLUMNS = ("crs_grade", "icans_grade", "serum/IL6", "blood_per_ul/cart", "tumor_burden")

#: response surrogate (Lugano 2014; Cheson et al., J Clin Oncol 2014): lesion size is measured as
#: the sum of the products of perpendicular diameters (SPD), an area; for a lesion of fixed cell
#: density SPD ~ cells^(2/3), so a 50 % fall in SPD is a fall of cells to 0.5^1.5 = 35 %
SPD_EXPONENT = 2.0 / 3.0
#: residual tumour [cells] counted as complete response: about 1 cm^3 of tumour (1e8-1e9 cells per cm^3,
#: Del Monte, Cell Cycle 2009), below the size of a normal lymph node (<= 1.5 cm, Lugano CT criterion); assumed
DETECTABLE_TUMOUR_CELLS = 1e8
#: response categories, best first: complete, partial, stable disease, progressive disease; NE: not evaluable
RESPONSES = ("CR", "PR", "SD", "PD")
RESPONSE_WORDS = {"CR": "complete response", "PR": "partial response", "SD": "stable disease (no response)",
                  "PD": "progressive disease (no response)", "NE": "not evaluable (no measurable tumour at the start)"}  # fmt: skip


@dataclass
class TumourResponse:
    """The tumour's response over a run (model surrogate of the Lugano categories; see :func:`tumour_response`)."""

    end: str  #: category at the run's end
    best: str  #: best category reached at any time
    end_fraction: float  #: tumour at the end over the tumour at the start
    nadir_fraction: float  #: least tumour over the tumour at the start
    nadir_day: float
    residual_cells: float | None  #: tumour in the patient at the end [cells] (None when the patient's burden is unknown)


def _response_at(fraction: np.ndarray, over_nadir: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
    """Category (index into RESPONSES) per time from tumour/start, tumour/nadir-so-far and residual cells."""
    spd = np.power(np.maximum(fraction, 0.0), SPD_EXPONENT)
    category = np.full(fraction.shape, 2)  # stable disease unless one of the others applies
    category[spd <= 0.5] = 1  # >= 50 % fall of SPD from the start
    category[np.power(over_nadir, SPD_EXPONENT) >= 1.5] = 3  # >= 50 % rise of SPD from the nadir (a relapse too)
    gone = fraction <= 0.0 if residual is None else (fraction <= 0.0) | (residual <= DETECTABLE_TUMOUR_CELLS)
    category[gone] = 0
    return category


def tumour_response(time_h: np.ndarray, burden: np.ndarray, tumour_cells: float | None = None) -> TumourResponse:
    """Response category at the end and at best, from the lattice tumour count over time (model surrogate of Lugano 2014).

    ``burden``: the ``tumor_burden`` series (tumour cells on the lattice); its first value is the
    start. ``tumour_cells``: the patient's tumour at the start (``patient.tumor_burden_cells``),
    which turns the lattice count into the patient's residual tumour. Categories, in the
    patient's tumour N(t) against the start N0 and the lowest value so far:

    - CR: no tumour left on the lattice, or the residual below :data:`DETECTABLE_TUMOUR_CELLS`;
    - PD: SPD (``N^(2/3)``) rose by at least 50 % from its lowest value so far (growth from the
      start, or a relapse after a response), the tumour being detectable;
    - PR: otherwise, SPD fell by at least 50 % from the start;
    - SD: none of these. "NE" when the start already lies below the detectable residual.

    A model surrogate: the lattice stands for the whole tumour, and the run's end (days) is
    earlier than a trial's first assessment (about 4 weeks).
    """
    burden = np.asarray(burden, dtype=np.float64)
    time_h = np.asarray(time_h, dtype=np.float64)
    start = float(burden[0]) if burden.size else 0.0
    if start <= 0 or (tumour_cells is not None and tumour_cells <= DETECTABLE_TUMOUR_CELLS):
        return TumourResponse("NE", "NE", math.nan, math.nan, math.nan, tumour_cells)
    fraction = burden / start
    nadir = np.minimum.accumulate(burden)
    over_nadir = np.where(nadir > 0, burden / np.maximum(nadir, 1e-300), np.where(burden > 0, np.inf, 1.0))
    residual = None if tumour_cells is None else fraction * tumour_cells
    category = _response_at(fraction, over_nadir, residual)
    i_nadir = int(np.argmin(burden))
    return TumourResponse(
        end=RESPONSES[int(category[-1])], best=RESPONSES[int(category.min())], end_fraction=float(fraction[-1]),
        nadir_fraction=float(fraction[i_nadir]), nadir_day=float(time_h[i_nadir] / HOURS_PER_DAY),
        residual_cells=None if residual is None else float(residual[-1]),
    )  # fmt: skip


def config_tumour_cells(config_text: str | bytes | None) -> float | None:
    """``patient.tumor_burden_cells`` from a run file's stored config text (the schema default when unset; None: unreadable)."""
    if config_text is None:
        return None
    try:
        import yaml  # noqa: PLC0415

        config = yaml.safe_load(_text(config_text)) or {}
        value = (config.get("patient") or {}).get("tumor_burden_cells", 1e10)
        return float(value)
    except Exception:  # noqa: BLE001 - an odd config text only costs the absolute residual
        return None


@dataclass
class GradeCourse:
    """The course of one toxicity grade (CRS or ICANS, model surrogate)."""

    max_grade: int
    onset_day: float | None  #: first day at grade >= 1
    max_grade_day: float | None  #: first day at the maximum grade (when >= 1)
    days_at_grade_ge1: float  #: total time at grade >= 1 [days]
    ongoing: bool  #: grade >= 1 at the end of the run
    resolved_day: float | None = None  #: first day back at grade 0 after the last day at grade >= 1


@dataclass
class TherapyGiven:
    """One drug's administrations."""

    drug: str
    doses: int
    first_day: float
    first_reason: str = ""


@dataclass
class RunSummary:
    """Headline numbers of one run (see :func:`run_summary`); ``text()`` formats them."""

    file: str
    status: str
    simulated_days: float
    steps: int
    backend: str
    crs: GradeCourse | None
    icans: GradeCourse | None
    il6_peak_pg_ml: float | None
    il6_peak_day: float | None
    cart_peak_per_ul: float | None
    cart_peak_day: float | None
    cart_fold: float | None  #: CAR-T peak over the first value (blood, cells/µL); None when that is 0
    bcells_start: int | None
    bcells_end: int | None
    bcells_cleared_day: float | None
    response: TumourResponse | None = None
    therapies: list[TherapyGiven] = field(default_factory=list)
    wall_s: float | None = None
    ms_per_step: float | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (nested dicts and lists), for JSON or a table."""
        return asdict(self)

    def text(self, next_steps: bool = True, exclude: tuple[str, ...] = ()) -> str:
        """The summary as lines of text; ``next_steps`` adds the commands to try next (but the sub-commands in ``exclude``)."""
        return format_summary(self, next_steps=next_steps, exclude=exclude)

    def __str__(self) -> str:
        return self.text()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_events(f: h5py.File) -> list[dict[str, Any]]:
    """``therapy/events`` as dicts (group of columns, or a compound dataset in older files)."""
    if "therapy/events" not in f:
        return []
    node = f["therapy/events"]
    if isinstance(node, h5py.Dataset) and node.dtype.names:
        cols = {name: node[name] for name in node.dtype.names}
    elif isinstance(node, h5py.Group) and "time_h" in node:
        cols = {k: node[k][()] for k in node if isinstance(node[k], h5py.Dataset)}
    else:
        return []
    n = len(cols.get("time_h", []))
    return [{k: (_text(v[i]) if isinstance(v[i], (bytes, str)) else v[i].item()) for k, v in cols.items() if len(v) == n}
            for i in range(n)]  # fmt: skip


def _day(time_h: np.ndarray, i: int) -> float:
    return float(time_h[i] / HOURS_PER_DAY)


def _first_day(time_h: np.ndarray, mask: np.ndarray) -> float | None:
    hits = np.flatnonzero(mask)
    return _day(time_h, int(hits[0])) if hits.size else None


def grade_course(time_h: np.ndarray, grade: np.ndarray) -> GradeCourse:
    """Max grade, onset, time at grade >= 1 (each row stands for the step that ended at it) and whether ongoing."""
    grade = np.asarray(grade).astype(np.int64)
    top = int(grade.max()) if grade.size else 0
    step_h = np.diff(time_h)
    days = float(np.sum(step_h[grade[1:] >= 1]) / HOURS_PER_DAY) if grade.size > 1 else 0.0
    sick = np.flatnonzero(grade >= 1)
    resolved = _day(time_h, int(sick[-1]) + 1) if sick.size and sick[-1] + 1 < grade.size else None
    return GradeCourse(
        max_grade=top, onset_day=_first_day(time_h, grade >= 1), max_grade_day=_first_day(time_h, grade >= top) if top >= 1 else None,
        days_at_grade_ge1=days, ongoing=bool(grade.size and grade[-1] >= 1), resolved_day=resolved,
    )  # fmt: skip


def _attr(f: h5py.File, name: str, default: Any = None) -> Any:
    value = f.attrs.get(name, default)
    return _text(value) if isinstance(value, bytes) else value


def run_summary(path: str | Path) -> RunSummary:
    """The summary of a run file, from its time series, therapy events and root attributes."""
    path = Path(path)
    check_run_file(path)
    with open_read(path) as f:
        ts = f["timeseries"]
        time_h = np.asarray(ts["time_h"][()], dtype=np.float64)
        cols = {name: np.asarray(ts[name][()]) for name in COLUMNS if name in ts}
        events = read_events(f)
        status = str(_attr(f, "status", ""))
        backend = str(_attr(f, "backend", ""))
        wall_s = _attr(f, "wall_s")
        wall_steps = _attr(f, "wall_steps")
        dt_min = None
        config_text = f["config"][()] if "config" in f else None
        try:
            import yaml  # noqa: PLC0415

            dt_min = float(((yaml.safe_load(_text(config_text)) or {}).get("run") or {}).get("dt_min"))
        except Exception:  # noqa: BLE001 - an odd config text only costs the step count
            dt_min = None
    n = min([len(time_h)] + [len(v) for v in cols.values()])
    if n == 0:
        raise InputFileError(f"{path}: the time series is empty (the run stopped before its first flush)")
    time_h = time_h[:n]
    cols = {k: v[:n] for k, v in cols.items()}

    il6 = cols.get("serum/IL6")
    i_il6 = int(np.argmax(il6)) if il6 is not None else None
    cart = cols.get("blood_per_ul/cart")
    i_cart = int(np.argmax(cart)) if cart is not None else None
    burden = cols.get("tumor_burden")
    therapies: dict[str, TherapyGiven] = {}
    for event in sorted(events, key=lambda e: float(e.get("time_h", 0.0))):
        drug = str(event.get("drug", "?"))
        if drug in therapies:
            therapies[drug].doses += 1
        else:
            therapies[drug] = TherapyGiven(drug, 1, float(event.get("time_h", 0.0)) / HOURS_PER_DAY, str(event.get("reason", "")))
    steps = round(float(time_h[-1]) * 60.0 / dt_min) if dt_min else n - 1
    files = [str(p) for p in (path, xdmf_path(path), checkpoint_path(path)) if p.exists()]
    return RunSummary(
        file=str(path), status=status, simulated_days=float(time_h[-1] / HOURS_PER_DAY), steps=int(steps), backend=backend,
        crs=grade_course(time_h, cols["crs_grade"]) if "crs_grade" in cols else None,
        icans=grade_course(time_h, cols["icans_grade"]) if "icans_grade" in cols else None,
        il6_peak_pg_ml=float(il6[i_il6]) if i_il6 is not None else None,
        il6_peak_day=_day(time_h, i_il6) if i_il6 is not None else None,
        cart_peak_per_ul=float(cart[i_cart]) if i_cart is not None else None,
        cart_peak_day=_day(time_h, i_cart) if i_cart is not None else None,
        cart_fold=float(cart[i_cart] / cart[0]) if i_cart is not None and cart[0] > 0 else None,
        bcells_start=int(burden[0]) if burden is not None else None,
        bcells_end=int(burden[-1]) if burden is not None else None,
        bcells_cleared_day=_first_day(time_h, burden <= 0) if burden is not None else None,
        response=tumour_response(time_h, burden, config_tumour_cells(config_text)) if burden is not None else None,
        therapies=list(therapies.values()),
        wall_s=float(wall_s) if wall_s is not None else None,
        ms_per_step=float(wall_s) / int(wall_steps) * 1e3 if wall_s is not None and wall_steps else None,
        files=files,
    )  # fmt: skip


# --------------------------------------------------------------------------- text


def _at(day: float, hours: bool) -> str:
    """``day 3.1``, or ``hour 12.0`` in a run shorter than two days."""
    return f"hour {day * HOURS_PER_DAY:.1f}" if hours else f"day {day:.1f}"


def _on(day: float, hours: bool) -> str:
    """``on day 3.1`` or ``at hour 12.0``."""
    return ("at " if hours else "on ") + _at(day, hours)


def _grade_text(name: str, course: GradeCourse | None, hours: bool = False) -> str:
    if course is None:
        return f"{name:<8} not recorded in this file"
    if course.max_grade == 0:
        return f"{name:<8} none (grade 0 throughout; model surrogate)"
    text = (f"{name:<8} max grade {course.max_grade} (model surrogate) from {_at(course.max_grade_day, hours)}; "
            f"onset (grade >= 1) {_at(course.onset_day, hours)}")  # fmt: skip
    span = f"{course.days_at_grade_ge1 * HOURS_PER_DAY:.1f} h" if hours else f"{course.days_at_grade_ge1:.1f} days"
    text += f", {span} at grade >= 1"
    return text + (", ongoing at the end" if course.ongoing else f", resolved by {_at(course.resolved_day, hours)}")


def response_text(r: TumourResponse, hours: bool = False) -> str:
    """One line: the category at the end and at best, with the tumour fractions behind them."""
    if r.end == "NE":
        return RESPONSE_WORDS["NE"]
    text = f"{RESPONSE_WORDS[r.end]} at the end (model surrogate of Lugano), tumour at {100 * r.end_fraction:.3g} % of the start"
    if r.residual_cells is not None:
        text += f" (~{r.residual_cells:.2g} cells in the patient)"
    if r.best != r.end:
        text += f"; best {r.best} (lowest {100 * r.nadir_fraction:.3g} % {_on(r.nadir_day, hours)})"
    return text


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"


def next_commands(h5: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The commands to try on a finished run file (without the sub-commands in ``exclude``)."""
    movie = str(Path(h5).with_suffix(".mp4"))
    commands = {"report": f"carabm report {h5}", "render": f"carabm render {h5} --out {movie}", "view": f"carabm view {h5}"}
    return [text for name, text in commands.items() if name not in exclude]


def format_summary(s: RunSummary, next_steps: bool = True, exclude: tuple[str, ...] = ()) -> str:
    """The summary as indented lines (the first names the file, the status and the time)."""
    span = f"{s.simulated_days:.1f} days" if s.simulated_days >= 1 else f"{s.simulated_days * HOURS_PER_DAY:.3g} h"
    head = f"{s.file}: {s.status or 'unknown status'}, {span} simulated ({s.steps} steps on {s.backend or '?'})"
    if s.wall_s is not None:
        head += f" in {s.wall_s:.1f} s"
        if s.ms_per_step is not None:
            head += f", {s.ms_per_step:.1f} ms/step"
    hours = s.simulated_days < 2
    lines = [head, _grade_text("CRS", s.crs, hours), _grade_text("ICANS", s.icans, hours)]
    if s.il6_peak_pg_ml is not None:
        lines.append(f"{'IL-6':<8} serum peak {_number(s.il6_peak_pg_ml)} pg/mL {_on(s.il6_peak_day, hours)}")
    if s.cart_peak_per_ul == 0:
        lines.append(f"{'CAR-T':<8} none in the blood")
    elif s.cart_peak_per_ul is not None:
        fold = f" ({s.cart_fold:.3g}x the first value)" if s.cart_fold is not None else ""
        lines.append(f"{'CAR-T':<8} blood peak {_number(s.cart_peak_per_ul)} cells/µL {_on(s.cart_peak_day, hours)}{fold}")
    if s.bcells_start is not None:
        change = f" ({100.0 * (s.bcells_end - s.bcells_start) / s.bcells_start:+.0f} %)" if s.bcells_start else ""
        cleared = f"; cleared {_on(s.bcells_cleared_day, hours)}" if s.bcells_cleared_day is not None else "; not cleared"
        lines.append(f"{'Tumour':<8} B cells on the lattice {s.bcells_start} -> {s.bcells_end}{change}{cleared}")
    if s.response is not None:
        lines.append(f"{'Response':<8} {response_text(s.response, hours)}")
    if s.therapies:
        for i, t in enumerate(s.therapies):
            reason = f" ({t.first_reason})" if t.first_reason else ""
            doses = f"{t.doses} dose{'s' if t.doses != 1 else ''}"
            lines.append(f"{'Therapy' if i == 0 else '':<8} {t.drug}: {doses}, first {_on(t.first_day, hours)}{reason}")
    else:
        lines.append(f"{'Therapy':<8} none given")
    if s.files:
        lines.append(f"{'Files':<8} {', '.join(s.files)}")
    if next_steps:
        for i, command in enumerate(next_commands(s.file, exclude)):
            lines.append(f"{'Next' if i == 0 else '':<8} {command}")
    return "\n".join([lines[0]] + ["  " + line for line in lines[1:]])


__all__ = ["RunSummary", "GradeCourse", "TherapyGiven", "TumourResponse", "run_summary", "format_summary", "grade_course", "read_events",
           "next_commands", "tumour_response", "response_text", "config_tumour_cells", "RESPONSES", "DETECTABLE_TUMOUR_CELLS"]
