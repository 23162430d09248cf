"""``carabm collect DIR``: one table of a sweep's members (inputs and outcomes) and a cohort summary.

Writes ``DIR/results.csv`` (and ``DIR/results.parquet`` when pyarrow is importable) and
``DIR/summary.md`` with the incidence of CRS and ICANS (any grade, grade >= 3), the
complete- and objective-response rates (model surrogate of Lugano), and their Wilson 95 %
confidence intervals over the members that completed. For a Sobol' or Morris
sweep (``DIR/design.json``) it also writes ``DIR/sensitivity.csv``: the SALib indices of
each varied key for a set of outcomes (:data:`SENSITIVITY_OUTPUTS`). When the sweep file
carries a ``trial:`` table (a calibration's ``posterior_mean.yaml`` does), the summary puts
the cohort next to the trial with 95 % intervals (:mod:`carabm.hpc.trial`); the plots
(grade and onset-day distributions, peak IL-6 by grade) go to ``DIR/plots/``. Members that
share a seed (a ``paired: true`` cohort with treatment arms) are compared patient by patient
in ``DIR/arms.csv`` and the summary (:mod:`carabm.hpc.paired`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carabm.errors import CarabmError, InputFileError
from carabm.hpc.paired import Paired, paired_arms, paired_markdown
from carabm.hpc.sweep import DESIGN_JSON, MEMBERS_CSV, OUTPUT_NAME, output_status
from carabm.hpc.trial import Trial, comparison, comparison_markdown, median, parse_trial, wilson_interval


@dataclass
class Collected:
    """The result of :func:`collect`: table rows, the summary text and the files written."""

    rows: list[dict[str, Any]]
    incidence: dict[str, tuple[int, int, float, float, float]]
    markdown: str
    written: list[Path]
    sensitivity: Sensitivity | None = None
    trial: Trial | None = None
    paired: Paired | None = None


def _parse(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def read_members(folder: str | Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and rows of ``DIR/members.csv`` (numbers parsed)."""
    path = Path(folder) / MEMBERS_CSV
    if not path.is_file():
        raise InputFileError(f"{path}: no such file; give the --out folder of 'carabm sweep'")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [{k: _parse(v) for k, v in row.items()} for row in reader]
    return header, rows


SENSITIVITY_OUTPUTS = (("peak_serum_IL6_pg_ml", "peak serum IL-6"), ("max_crs_grade", "max CRS grade"),
                       ("max_icans_grade", "max ICANS grade"), ("cart_peak_count", "CAR-T peak"),
                       ("bcells_cleared_day", "B-cell clearance day"))  # fmt: skip
SOBOL_COLUMNS = ("output", "key", "S1", "S1_conf", "ST", "ST_conf")
MORRIS_COLUMNS = ("output", "key", "mu", "mu_star", "mu_star_conf", "sigma")


@dataclass
class Sensitivity:
    """SALib indices of a Sobol' or Morris sweep: one record per (output, key), and notes on what was skipped."""

    method: str
    records: list[dict[str, Any]]
    notes: list[str]

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of ``sensitivity.csv`` for this method."""
        return SOBOL_COLUMNS if self.method == "sobol" else MORRIS_COLUMNS


def read_design(folder: str | Path) -> dict[str, Any] | None:
    """``DIR/design.json`` of a Sobol'/Morris sweep, or None for other sweeps."""
    path = Path(folder) / DESIGN_JSON
    if not path.is_file():
        return None
    try:
        design = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read the sensitivity design ({exc})") from None
    if not isinstance(design, dict) or design.get("method") not in ("sobol", "morris") or "problem" not in design:
        raise InputFileError(f"{path}: not a sensitivity design written by 'carabm sweep'")
    return design


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def sensitivity(design: dict[str, Any], rows: list[dict[str, Any]],
                outputs: tuple[tuple[str, str], ...] = SENSITIVITY_OUTPUTS) -> Sensitivity:  # fmt: skip
    """SALib indices of ``outputs`` from the member ``rows`` (index, status and outcome columns).

    The analysis needs every member of the design: when one is not complete, nothing is
    analysed and the note says which. Outputs with a missing/non-finite value (e.g. B cells
    never cleared) or the same value in every member are skipped with a note.
    """
    import numpy as np  # noqa: PLC0415

    method = design["method"]
    problem = {k: design["problem"][k] for k in ("num_vars", "names", "bounds")}
    sample = np.asarray(design["sample"], dtype=float)
    result = Sensitivity(method, [], [])
    by_index = {int(r["index"]): r for r in rows}
    missing = [i for i in range(len(sample)) if i not in by_index]
    bad = [i for i in range(len(sample)) if i in by_index and by_index[i].get("status") != "complete"]
    if missing or bad:
        listed = ", ".join(f"{i:04d}" for i in (missing + bad)[:20]) + (", ..." if len(missing + bad) > 20 else "")
        result.notes.append(f"not analysed: the {method} analysis needs all {len(sample)} members, "
                            f"{len(missing) + len(bad)} did not complete ({listed}); rerun them and collect again")  # fmt: skip
        return result
    try:
        import SALib  # noqa: F401, PLC0415
    except ImportError:
        result.notes.append(f"not analysed: the {method} analysis needs SALib (pip install 'carabm[hpc]' or pip install SALib)")
        return result
    seed = int(design.get("salib_seed", 0))
    for key, label in outputs:
        values = [_finite(by_index[i].get(key)) for i in range(len(sample))]
        absent = sum(v is None for v in values)
        if absent:
            result.notes.append(f"{key} ({label}): skipped, not finite in {absent} of {len(values)} members")
            continue
        y = np.asarray(values, dtype=float)
        if np.ptp(y) == 0:
            result.notes.append(f"{key} ({label}): skipped, the same value ({y[0]:.6g}) in every member")
            continue
        if method == "sobol":
            from SALib.analyze import sobol  # noqa: PLC0415

            res = sobol.analyze(problem, y, calc_second_order=bool(design.get("calc_second_order", False)),
                                print_to_console=False, seed=seed)  # fmt: skip
            fields = ("S1", "S1_conf", "ST", "ST_conf")
        else:
            from SALib.analyze import morris  # noqa: PLC0415

            res = morris.analyze(problem, sample, y, num_levels=int(design.get("levels", 4)), print_to_console=False, seed=seed)
            fields = ("mu", "mu_star", "mu_star_conf", "sigma")
        for j, name in enumerate(problem["names"]):
            result.records.append({"output": key, "key": name, **{f: float(np.asarray(res[f])[j]) for f in fields}})
    return result


def _write_sensitivity(folder: Path, result: Sensitivity) -> Path:
    path = folder / "sensitivity.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.columns), lineterminator="\n")
        writer.writeheader()
        for record in result.records:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in record.items()})
    return path


def _sensitivity_markdown(result: Sensitivity, design: dict[str, Any]) -> list[str]:
    names = design["problem"]["names"]
    if result.method == "sobol":
        what = (f"Sobol' indices (SALib, Saltelli sample N = {design.get('n')}, {len(names)} keys, "
                f"{len(design['sample'])} members): first-order S1 and total ST with 95 % confidence half-widths.")  # fmt: skip
        head = ["| output | key | S1 | ST |", "|---|---|---|---|"]
        cells = [f"| {r['output']} | {r['key']} | {r['S1']:.3f} ± {r['S1_conf']:.3f} | {r['ST']:.3f} ± {r['ST_conf']:.3f} |"
                 for r in result.records]  # fmt: skip
    else:
        what = (f"Morris elementary effects (SALib, {design.get('trajectories')} trajectories, {design.get('levels')} levels, "
                f"{len(names)} keys): mu* (mean |elementary effect|, ± 95 % confidence half-width) and sigma; an effect is "
                "the change of the output per whole range of the key.")  # fmt: skip
        head = ["| output | key | mu* | sigma |", "|---|---|---|---|"]
        cells = [f"| {r['output']} | {r['key']} | {r['mu_star']:.4g} ± {r['mu_star_conf']:.3g} | {r['sigma']:.4g} |"
                 for r in result.records]  # fmt: skip
    lines = ["", "## Sensitivity", "", what]
    if result.records:
        lines += ["", *head, *cells]
        lines += ["", "All indices: sensitivity.csv."]
    if result.notes:
        lines += ["", *[f"- {n}" for n in result.notes]]
    return lines


INCIDENCE = (("CRS any grade", "max_crs_grade", 1), ("CRS grade >= 3", "max_crs_grade", 3),
             ("ICANS any grade", "max_icans_grade", 1), ("ICANS grade >= 3", "max_icans_grade", 3))  # fmt: skip
#: response rates (model surrogate of Lugano, see carabm.io.summary.tumour_response): label, column, categories counted
RESPONSE_RATES = (("Complete response at the end", "response_end", ("CR",)),
                  ("Objective response (best CR or PR)", "response_best", ("CR", "PR")))  # fmt: skip


def read_trial(folder: str | Path) -> Trial | None:
    """The ``trial:`` table of the sweep file kept in ``DIR/sweep.yaml``, or None."""
    path = Path(folder) / "sweep.yaml"
    if not path.is_file():
        return None
    from carabm.io.yaml_input import read_yaml  # noqa: PLC0415

    data = read_yaml(path).get("trial")
    return parse_trial(data, f"{path}: trial") if data is not None else None


def calibration_cohort(folder: Path) -> Path:
    """A calibration folder's posterior-mean cohort (``DIR/cohort``); the folder itself otherwise."""
    if (folder / "calibration.json").is_file() and not (folder / MEMBERS_CSV).is_file():
        cohort = folder / "cohort"
        if not (cohort / MEMBERS_CSV).is_file():
            raise InputFileError(f"{folder}: a calibration folder without its posterior-mean cohort; run "
                                 f"'carabm sweep {folder / 'posterior_mean.yaml'} --out {cohort} --workers N' first")  # fmt: skip
        return cohort
    return folder


def collect(folder: str | Path, plots: bool = True) -> Collected:
    """Summarise every member of a sweep folder into one table and the cohort incidence.

    A calibration folder (``carabm calibrate --out DIR``) is collected through its
    posterior-mean cohort ``DIR/cohort``. ``plots``: write ``DIR/plots/*.png``.
    """
    from carabm.io.report import read_series, summarize  # noqa: PLC0415

    folder = calibration_cohort(Path(folder))
    header, members = read_members(folder)
    rows: list[dict[str, Any]] = []
    for member in members:
        index = int(member["index"])
        sub = folder / f"{index:04d}"
        out = sub / OUTPUT_NAME
        row: dict[str, Any] = dict(member)
        status = output_status(out)
        if (sub / "error.txt").exists() and status != "complete":
            status = "failed"
        row["status"] = status
        row["error"] = ""
        if status == "failed":
            lines = (sub / "error.txt").read_text(encoding="utf-8", errors="replace").splitlines()
            row["error"] = lines[0] if lines else ""
        if status in ("complete", "running"):
            try:
                summary = summarize(read_series(out))
            except CarabmError as exc:
                row["status"], row["error"] = "damaged", str(exc).splitlines()[0]
            else:
                for key, value in summary.items():
                    if key not in ("run", "file", "status"):
                        row[key] = value
        rows.append(row)

    complete = [r for r in rows if r["status"] == "complete"]
    incidence = {}
    for label, key, grade in INCIDENCE:
        graded = [r for r in complete if r.get(key) is not None]
        k = sum(int(r[key]) >= grade for r in graded)
        n = len(graded)
        lo, hi = wilson_interval(k, n)
        incidence[label] = (k, n, k / n if n else math.nan, lo, hi)
    for label, key, counted in RESPONSE_RATES:
        evaluable = [r for r in complete if r.get(key) in ("CR", "PR", "SD", "PD")]
        k = sum(r[key] in counted for r in evaluable)
        n = len(evaluable)
        lo, hi = wilson_interval(k, n)
        incidence[label] = (k, n, k / n if n else math.nan, lo, hi)

    written = _write_table(folder, rows)
    paired = paired_arms(header, rows)
    markdown = _markdown(folder, rows, incidence, header, pooled_arms=paired is not None)
    trial = read_trial(folder)
    if trial is not None:
        markdown += "\n".join(comparison_markdown(trial, comparison(trial, complete))) + "\n"
    if plots and complete:
        from carabm.hpc.plots import cohort_plots  # noqa: PLC0415

        written += cohort_plots(complete, folder / "plots", trial)
    if paired is not None:
        written.append(_write_paired(folder, paired))
        markdown += "\n".join(paired_markdown(paired)) + "\n"
    design = read_design(folder)
    result = None
    if design is not None:
        result = sensitivity(design, rows)
        stale = folder / "sensitivity.csv"
        if result.records:
            written.append(_write_sensitivity(folder, result))
        else:
            stale.unlink(missing_ok=True)
        markdown += "\n".join(_sensitivity_markdown(result, design)) + "\n"
    (folder / "summary.md").write_text(markdown, encoding="utf-8")
    written.append(folder / "summary.md")
    return Collected(rows, incidence, markdown, written, result, trial, paired)


def _write_paired(folder: Path, result: Paired) -> Path:
    path = folder / "arms.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.records)
    return path


def _write_table(folder: Path, rows: list[dict[str, Any]]) -> list[Path]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path = folder / "results.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    written = [path]
    try:
        import pyarrow  # noqa: F401, PLC0415
    except ImportError:
        return written
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame(rows, columns=columns)
    for col in frame.columns:  # mixed objects (YAML lists in members.csv) as text
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    frame.to_parquet(folder / "results.parquet", index=False)
    written.append(folder / "results.parquet")
    return written


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0000-0002, 0005``."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start:04d}" if start == prev else f"{start:04d}-{prev:04d}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f} %"


def _markdown(folder: Path, rows: list[dict[str, Any]], incidence: dict[str, tuple[int, int, float, float, float]],
              header: list[str], pooled_arms: bool = False) -> str:  # fmt: skip
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    varied = [h for h in header if h not in ("index", "seed")]
    lines = [f"# Sweep {folder}", "",
             f"{len(rows)} members: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
             f"Varied keys: {', '.join(varied) if varied else '(none; replicate seeds)'}.", "",
             "Incidence over the complete members (grades and responses are model surrogates; responses over the evaluable members), "
             + ("all arms pooled (compare the arms under \"Paired arms\" below), " if pooled_arms else "")
             + "Wilson 95 % CI:", "",
             "| outcome | members | incidence | 95 % CI |", "|---|---|---|---|"]  # fmt: skip
    for label, (k, n, p, lo, hi) in incidence.items():
        lines.append(f"| {label} | {k}/{n} | {_pct(p)} | {_pct(lo)} – {_pct(hi)} |")
    complete = [r for r in rows if r["status"] == "complete"]
    medians = []
    for key, label in (("peak_serum_IL6_pg_ml", "peak serum IL-6 [pg/mL]"), ("cart_peak_count", "CAR-T peak [cells]"),
                       ("crs_onset_day_grade_ge1", "CRS onset [day]"), ("icans_onset_day_grade_ge1", "ICANS onset [day]")):  # fmt: skip
        values = sorted(float(r[key]) for r in complete if r.get(key) is not None)
        if values:
            medians.append(f"| {label} | {median(values):.4g} | {values[0]:.4g} – {values[-1]:.4g} | {len(values)} |")
    if medians:
        lines += ["", "| outcome | median | range | members |", "|---|---|---|---|", *medians]
    missing = [int(r["index"]) for r in rows if r["status"] == "missing"]
    bad = [r for r in rows if r["status"] not in ("complete", "missing")]
    if missing or bad:
        lines += ["", "Not complete:", ""]
    if missing:  # not run yet (e.g. carabm sweep --members): one line of index ranges
        lines.append(f"- missing (not run): {len(missing)} members, {_ranges(missing)}")
    lines += [f"- {int(r['index']):04d}: {r['status']}" + (f" — {r['error']}" if r.get("error") else "") for r in bad[:50]]
    return "\n".join(lines) + "\n"


__all__ = ["collect", "wilson_interval", "read_members", "read_trial", "calibration_cohort", "read_design", "sensitivity", "Collected", "Sensitivity",
           "SENSITIVITY_OUTPUTS"]  # fmt: skip
