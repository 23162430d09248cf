"""Sobol' and Morris sweeps: deterministic SALib designs, and the indices written by collect."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from carabm.cli import main
from carabm.errors import ConfigError
from carabm.hpc import collect as col
from carabm.hpc import sweep as sw

pytest.importorskip("SALib")

TINY = {
    "run": {"duration_h": 2, "dt_min": 6, "backend": "numpy", "snapshot_every_h": 2},
    "lattice": {"shape": [6, 16, 30]},
    "cells": {"cart": {"dose": 1.4e8}, "bcell": {"initial_count": 300}, "macrophage": {"initial_count": 60},
              "monocyte": {"initial_count": 6}, "microglia": {"initial_count": 30}},
}  # fmt: skip
DOSE, WEIGHT, MONO = "cells.cart.dose", "patient.weight_kg", "patient.monocytes_per_ul"
KEYS = {DOSE: {"low": 1.0e7, "high": 4.0e8}, WEIGHT: [50, 100], MONO: {"low": 200, "high": 800}}


def _sobol(n: int = 4, second: bool = False, seed: int = 4, keys: dict | None = None) -> dict[str, Any]:
    return {"base": dict(TINY), "seed": seed,
            "axes": {"sobol": {"n": n, "calc_second_order": second, "keys": keys or KEYS}}}  # fmt: skip


def _morris(r: int = 3, seed: int = 4, keys: dict | None = None) -> dict[str, Any]:
    return {"base": dict(TINY), "seed": seed, "axes": {"morris": {"trajectories": r, "levels": 4, "keys": keys or KEYS}}}


def test_sobol_and_morris_expansion(tmp_path: Path) -> None:
    a, b = sw.expand(_sobol(), tmp_path), sw.expand(_sobol(), tmp_path)
    assert len(a) == 4 * (3 + 2) and [m.values for m in a.members] == [m.values for m in b.members]
    assert [m.seed for m in a.members] == [m.seed for m in b.members]
    assert a.keys == [DOSE, WEIGHT, MONO] and a.design is not None and a.design["method"] == "sobol"
    assert len(sw.expand(_sobol(second=True), tmp_path)) == 4 * (2 * 3 + 2)
    assert sw.expand(_sobol(seed=5), tmp_path).members[0].values != a.members[0].values
    for m in a.members:
        assert 1.0e7 <= m.config.cells.cart.dose <= 4.0e8 and 50 <= m.config.patient.weight_kg <= 100

    m1, m2 = sw.expand(_morris(), tmp_path), sw.expand(_morris(), tmp_path)
    assert len(m1) == 3 * (3 + 1) and [m.values for m in m1.members] == [m.values for m in m2.members]
    assert m1.design is not None and m1.design["method"] == "morris" and len(m1.design["sample"]) == len(m1)
    # 4 levels: every value is low + k/3 (high - low)
    assert {round(3 * (m.values[WEIGHT] - 50) / 50, 9) for m in m1.members} <= {0.0, 1.0, 2.0, 3.0}

    sw.prepare(a, tmp_path / "out")
    design = json.loads((tmp_path / "out" / "design.json").read_text())
    assert design["problem"]["names"] == a.keys and len(design["sample"]) == len(a)
    sw.prepare(sw.expand(_sobol(), tmp_path), tmp_path / "out")  # same sweep again: accepted


@pytest.mark.parametrize(("spec", "match"), [
    (_sobol(n=6), r"axes\.sobol\.n: .*power of 2"),
    (_sobol(keys={DOSE: {"low": 1e7, "high": 1e9, "log": True}}), r"axes\.sobol\.keys\.cells\.cart\.dose: .*uniform"),
    ({**_sobol(), "axes": [{"sobol": _sobol()["axes"]["sobol"]}, {"list": {"run.dt_min": [5, 6]}}]}, r"axes\.sobol: .*only axis"),
    ({"base": dict(TINY), "axes": {"morris": {"trajectories": 2, "levels": 3, "keys": KEYS}}}, r"axes\.morris\.levels"),
    (_morris(r=1), r"axes\.morris\.trajectories"),
    ({"base": dict(TINY), "axes": {"morris": {"trajectories": 2, "keys": {DOSE: [5, 1]}}}}, r"low must be < high"),
])  # fmt: skip
def test_design_errors(tmp_path: Path, spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        sw.expand(spec, tmp_path)


def _fake_outcomes(monkeypatch: pytest.MonkeyPatch, folder: Path, members: list[sw.Member]) -> None:
    """Members' outcomes as a known function of the inputs (no model run): IL-6 and CAR-T peak depend on the
    dose (strongly) and the monocytes (weakly), not on the weight (a dummy key); CRS grade is constant,
    B cells never clear (None)."""
    import carabm.io.report as report  # noqa: PLC0415

    values = {m.index: m.values for m in members}

    def summarize(index: int) -> dict[str, Any]:
        v = values[index]
        x, z = (v[DOSE] - 1e7) / 3.9e8, (v[MONO] - 200) / 600
        return {"peak_serum_IL6_pg_ml": 100 + 900 * x**2 + 30 * z, "max_crs_grade": 1, "max_icans_grade": 0,
                "cart_peak_count": 1e5 * (1 + 4 * x + 0.2 * z), "bcells_cleared_day": None}  # fmt: skip

    monkeypatch.setattr(col, "output_status", lambda path: "complete")
    monkeypatch.setattr(report, "read_series", lambda path: int(Path(path).parent.name))
    monkeypatch.setattr(report, "summarize", summarize)


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", ["sobol", "morris"])
def test_collect_indices_rank_the_influential_key(method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _sobol(n=32) if method == "sobol" else _morris(r=10)
    sweep = sw.expand(spec, tmp_path)
    out = sw.prepare(sweep, tmp_path / "out")
    _fake_outcomes(monkeypatch, out, sweep.members)
    result = col.collect(out)
    assert result.sensitivity is not None and out / "sensitivity.csv" in result.written
    rows = _table(out / "sensitivity.csv")
    columns = col.SOBOL_COLUMNS if method == "sobol" else col.MORRIS_COLUMNS
    assert tuple(rows[0]) == columns
    assert [(r["output"], r["key"]) for r in rows] == [(o, k) for o in ("peak_serum_IL6_pg_ml", "cart_peak_count")
                                                       for k in (DOSE, WEIGHT, MONO)]  # fmt: skip
    index = {(r["output"], r["key"]): r for r in rows}
    for output in ("peak_serum_IL6_pg_ml", "cart_peak_count"):
        dose, weight, mono = (index[(output, k)] for k in (DOSE, WEIGHT, MONO))
        if method == "sobol":
            assert float(dose["ST"]) > 0.8 and abs(float(weight["ST"])) < 0.05
            assert float(dose["S1"]) > float(mono["S1"]) > float(weight["S1"]) - 0.05
        else:
            assert float(dose["mu_star"]) > float(mono["mu_star"]) > float(weight["mu_star"]) == pytest.approx(0, abs=1e-9)
    notes = "\n".join(result.sensitivity.notes)
    assert "max_crs_grade" in notes and "same value" in notes and "max_icans_grade" in notes
    assert "bcells_cleared_day" in notes and "not finite in" in notes
    summary = (out / "summary.md").read_text()
    assert "## Sensitivity" in summary and ("Sobol'" if method == "sobol" else "Morris") in summary


def test_collect_skips_the_analysis_when_members_did_not_complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = sw.prepare(sw.expand(_morris(r=2), tmp_path), tmp_path / "out")
    (out / "sensitivity.csv").write_text("stale\n")
    assert main(["collect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not analysed: the morris analysis needs all 8 members, 8 did not complete (0000, 0001" in printed
    assert not (out / "sensitivity.csv").exists()


def test_real_morris_sweep(tmp_path: Path) -> None:
    """A tiny real sweep: Morris, 2 trajectories x 2 keys = 6 members, then collect."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    spec = {"base": "tiny.yaml", "seed": 2,
            "axes": {"morris": {"trajectories": 2, "levels": 4, "keys": {DOSE: {"low": 5.0e7, "high": 4.0e8}, MONO: [200, 800]}}}}  # fmt: skip
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 0
    result = col.collect(out)
    assert len(result.rows) == 6 and all(r["status"] == "complete" for r in result.rows)
    assert result.sensitivity is not None
    analysed = {r["output"] for r in result.sensitivity.records}
    skipped = {o for o, _ in col.SENSITIVITY_OUTPUTS if any(n.startswith(o) for n in result.sensitivity.notes)}
    assert analysed | skipped == {o for o, _ in col.SENSITIVITY_OUTPUTS} and not analysed & skipped
    if analysed:
        rows = _table(out / "sensitivity.csv")
        assert len(rows) == 2 * len(analysed) and {r["key"] for r in rows} == {DOSE, MONO}
    assert "## Sensitivity" in (out / "summary.md").read_text()
