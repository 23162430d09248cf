"""``carabm collect DIR``: one table of a sweep's members (inputs and outcomes) and a cohort summary.

Writes ``DIR/results.csv`` (and ``DIR/results.parquet`` when pyarrow is importable) and
``DIR/summary.md`` with the incidence of CRS and ICANS (any grade, grade >= 3) and their
Wilson 95 % confidence intervals over the members that completed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carabm.errors import CarabmError, InputFileError
from carabm.hpc.sweep import MEMBERS_CSV, OUTPUT_NAME, output_status

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95 % by default); (nan, nan) when n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


@dataclass
class Collected:
    """The result of :func:`collect`: table rows, the summary text and the files written."""

    rows: list[dict[str, Any]]
    incidence: dict[str, tuple[int, int, float, float, float]]
    markdown: str
    written: list[Path]


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


INCIDENCE = (("CRS any grade", "max_crs_grade", 1), ("CRS grade >= 3", "max_crs_grade", 3),
             ("ICANS any grade", "max_icans_grade", 1), ("ICANS grade >= 3", "max_icans_grade", 3))  # fmt: skip


def collect(folder: str | Path) -> Collected:
    """Summarise every member of a sweep folder into one table and the cohort incidence."""
    from carabm.io.report import read_series, summarize  # noqa: PLC0415

    folder = Path(folder)
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

    written = _write_table(folder, rows)
    markdown = _markdown(folder, rows, incidence, header)
    (folder / "summary.md").write_text(markdown, encoding="utf-8")
    written.append(folder / "summary.md")
    return Collected(rows, incidence, markdown, written)


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


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f} %"


def _markdown(folder: Path, rows: list[dict[str, Any]], incidence: dict[str, tuple[int, int, float, float, float]],
              header: list[str]) -> str:  # fmt: skip
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    varied = [h for h in header if h not in ("index", "seed")]
    lines = [f"# Sweep {folder}", "",
             f"{len(rows)} members: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
             f"Varied keys: {', '.join(varied) if varied else '(none; replicate seeds)'}.", "",
             "Incidence over the complete members (grades are model surrogates), Wilson 95 % CI:", "",
             "| outcome | members | incidence | 95 % CI |", "|---|---|---|---|"]  # fmt: skip
    for label, (k, n, p, lo, hi) in incidence.items():
        lines.append(f"| {label} | {k}/{n} | {_pct(p)} | {_pct(lo)} – {_pct(hi)} |")
    complete = [r for r in rows if r["status"] == "complete"]
    medians = []
    for key, label in (("peak_serum_IL6_pg_ml", "peak serum IL-6 [pg/mL]"), ("cart_peak_count", "CAR-T peak [cells]"),
                       ("crs_onset_day_grade_ge1", "CRS onset [day]"), ("icans_onset_day_grade_ge1", "ICANS onset [day]")):  # fmt: skip
        values = sorted(float(r[key]) for r in complete if r.get(key) is not None)
        if values:
            medians.append(f"| {label} | {_median(values):.4g} | {values[0]:.4g} – {values[-1]:.4g} | {len(values)} |")
    if medians:
        lines += ["", "| outcome | median | range | members |", "|---|---|---|---|", *medians]
    bad = [r for r in rows if r["status"] != "complete"]
    if bad:
        lines += ["", "Not complete:", ""]
        lines += [f"- {int(r['index']):04d}: {r['status']}" + (f" — {r['error']}" if r.get("error") else "") for r in bad[:50]]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


__all__ = ["collect", "wilson_interval", "read_members", "Collected"]
