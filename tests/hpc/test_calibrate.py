"""Calibration against a trial: the file's checks, the trial table and its intervals, ABC-SMC end to end and resumed."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from carabm.cli import main
from carabm.errors import CarabmError, ConfigError
from carabm.hpc.calibration import incidence_scale, load_calibration, parse_calibration
from carabm.hpc.members import load_sweep
from carabm.hpc.trial import (
    STATISTICS,
    cohort_statistics,
    comparison,
    comparison_markdown,
    median_interval,
    parse_trial,
    wilson_interval,
)

ROOT = Path(__file__).parents[2]

TINY = {
    "run": {"duration_h": 1, "dt_min": 6, "backend": "numpy", "snapshot_every_h": 1, "checkpoint_every_h": 2},
    "lattice": {"shape": [6, 16, 30]},
    "cells": {"cart": {"dose": 1.4e8}, "bcell": {"initial_count": 300}, "macrophage": {"initial_count": 60},
              "monocyte": {"initial_count": 6}, "microglia": {"initial_count": 30}},
}  # fmt: skip

TRIAL = {"name": "TOY", "n": 50, "source": "synthetic table for the tests", "grading": "ASTCT",
         "outcomes": {"crs_any": 0.5, "crs_grade3": 0.1, "crs_onset_median_day": 0.02, "complete_response": 0.5}}  # fmt: skip

CALIBRATION = {
    "trial": TRIAL,
    "cohort": {"base": "tiny.yaml", "seed": 3, "n": 1,
               "traits": {"patient.tumor_burden_cells": {"lognormal": {"median": {"prior": {"loguniform": [1.0e9, 1.0e11]}},
                                                                       "sigma": 0.5}}}},
    "parameters": {"cytokines.IL6.secretion_scale": {"uniform": [0.5, 2.0]}},
    "fit": {"statistics": ["crs_any", "crs_onset_median_day"], "scales": {"crs_onset_median_day": 0.05}},
    "abc": {"population": 3, "generations": 2, "initial_epsilon": 1.0e6},  # no prior sample to set it: fewer runs
    "check": {"n": 1},
}  # fmt: skip


def _write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- intervals and the trial table


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for k, n in ((94, 101), (13, 101), (0, 8), (8, 8), (3, 7)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_median_interval_from_order_statistics():
    from scipy.stats import binom

    x = [float(v) for v in range(1, 11)]  # n = 10: ranks 2 and 9 (P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2))
    assert median_interval(x[::-1]) == (2.0, 9.0)
    assert all(math.isnan(v) for v in median_interval([1, 2, 3, 4, 5]))  # 1 - 2/32 < 0.95: no 95 % interval exists
    assert median_interval([1, 2, 3, 4, 5, 6]) == (1.0, 6.0)  # 1 - 2/64 >= 0.95
    for n in (6, 11, 30, 101):  # the exact coverage 1 - 2 P(B <= j - 1) is >= 95 % and the next rank would drop below
        lo, hi = median_interval(list(range(n)))
        j = int(lo) + 1
        assert hi == n - j
        assert 1 - 2 * binom.cdf(j - 1, n, 0.5) >= 0.95 > 1 - 2 * binom.cdf(j, n, 0.5)


def test_cohort_statistics_and_the_comparison_on_synthetic_members():
    rows = [{"max_crs_grade": g, "max_icans_grade": i, "crs_onset_day_grade_ge1": d, "icans_onset_day_grade_ge1": None}
            for g, i, d in ((0, 0, None), (1, 0, 2.0), (2, 1, 1.0), (3, 0, 4.0))]  # fmt: skip
    stats = cohort_statistics(["crs_any", "crs_grade3", "icans_any", "crs_onset_median_day", "icans_onset_median_day"], rows,
                              censor_day=7.0)  # fmt: skip
    assert stats == {"crs_any": 0.75, "crs_grade3": 0.25, "icans_any": 0.25, "crs_onset_median_day": 2.0,
                     "icans_onset_median_day": 7.0}  # no ICANS: onset censored at the run's length  # fmt: skip
    trial = parse_trial(TRIAL)
    table = {row.name: row for row in comparison(trial, rows)}
    assert (table["crs_any"].cohort.k, table["crs_any"].cohort.n) == (3, 4)
    assert (table["crs_any"].cohort.low, table["crs_any"].cohort.high) == wilson_interval(3, 4)
    assert (table["crs_any"].trial_low, table["crs_any"].trial_high) == wilson_interval(25, 50)
    assert table["complete_response"].cohort is None  # no response readout in the rows
    text = "\n".join(comparison_markdown(trial, list(table.values())))
    assert "| complete response | n/a (no model readout)" in text and "Grading in the trial: ASTCT" in text
    assert "| CRS, any grade | 75.0 % |" in text


def test_incidence_scale_is_the_standard_error_of_a_difference():
    assert incidence_scale(0.5, 100, 25) == pytest.approx(math.sqrt(0.25 * (1 / 100 + 1 / 25)))
    assert incidence_scale(1.0, 100, 10) > 0  # never zero at p = 0 or 1


# --------------------------------------------------------------------------- the file


def _bad(data: dict, tmp_path: Path) -> str:
    _write(tmp_path, "tiny.yaml", TINY)
    with pytest.raises(ConfigError) as info:
        parse_calibration(data, tmp_path)
    return str(info.value)


def _with(path: str, value: object) -> dict:
    data = copy.deepcopy(CALIBRATION)
    node = data
    *head, last = path.split("/")
    for key in head:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "message"), [
    ("abc/population", 1, "abc.population: expected a whole number >= 2, got 1"),
    # two particles for two quantities: pyabc's kernel is singular (rarely, a NaN population; seen once in the test below)
    ("abc/population", 2, "abc.population: 2 particles for 2 fitted quantities; give at least 3"),
    ("abc/speed", 3, "abc: unknown key(s) speed; expected population, generations"),
    ("parameters/cytokines.IL6.secretion_scale", {"uniform": [2.0, 0.5]}, "parameters.cytokines.IL6.secretion_scale.uniform: LOW must be < HIGH"),
    ("parameters/cytokines.IL6.secretion_scale", {"beta": [1, 2]}, "parameters.cytokines.IL6.secretion_scale: expected a prior {uniform"),
    ("parameters/cytokines.IL6.secretion_scale", {"loguniform": [0, 2]}, "log-uniform bounds must be > 0"),
    ("parameters/cytokines.IL6.secretion_scael", {"uniform": [0.5, 2.0]}, "cytokines.IL6.secretion_scael"),
    ("parameters/cytokines.IL6.secretion_scale", {"uniform": [-1.0, 2.0]}, "cytokines.IL6.secretion_scale = -1 (prior uniform -1, 2)"),
    ("fit/statistics", ["crs_any", "icans_any"], "fit.statistics: 'icans_any' has no value in trial.outcomes"),
    ("fit/statistics", ["crs_sometimes"], "fit.statistics: 'crs_sometimes' is not a statistic; expected one of crs_any"),
    ("fit/scales", {}, "fit.scales.crs_onset_median_day: required for a median"),
    ("trial/outcomes", {"crs_any": 93}, "trial.outcomes.crs_any: an incidence is a fraction in [0, 1] (0.93 for 93 %), got 93"),
    ("trial/grading", None, "trial.grading: required text"),
    ("cohort/traits", {"patient.weight_kg": {"gamma": {"shape": 2}}}, "cohort.traits.patient.weight_kg: expected one distribution (lognormal, normal, uniform)"),
    ("cohort/n", 0, "cohort.n: expected a whole number >= 1, got 0"),
    ("cohort/base", "missing.yaml", "missing.yaml"),
    ("reduce", {}, "calibration: unknown key(s) reduce; expected description, trial, cohort"),
])  # fmt: skip
def test_bad_calibration_files_name_the_key(tmp_path, path, value, message):
    data = _with(path, value) if "/" in path else {**CALIBRATION, path: value}
    text = _bad(data, tmp_path)
    assert message in text
    assert len(text.splitlines()) == 1


def test_cli_bad_file_is_one_line(tmp_path, capsys):
    _write(tmp_path, "tiny.yaml", TINY)
    path = _write(tmp_path, "cal.yaml", _with("abc/population", 0))
    assert main(["calibrate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["carabm: abc.population: expected a whole number >= 2, got 0"] or (len(err) == 1 and "abc.population" in err[0])
    assert not (tmp_path / "out").exists()


def test_the_zuma1_file_loads_in_both_forms_and_says_its_grading():
    full = load_calibration(ROOT / "configs" / "calibration_zuma1.yaml")
    small = load_calibration(ROOT / "configs" / "calibration_zuma1.yaml", reduced=True)
    assert full.trial.n == 101 and full.trial.outcomes["crs_any"] == 0.93 and full.trial.outcomes["icans_grade3"] == 0.28
    assert "Lee 2014" in full.trial.grading and "ASTCT" in full.trial.grading and "Pennisi" in full.trial.grading
    assert small.n < full.n and small.abc.population < full.abc.population and small.fingerprint() != full.fingerprint()
    assert small.abc_names == full.abc_names
    spec = small.sweep({p.name: p.typical()[0] for p in small.priors})
    assert spec["axes"]["cohort"]["n"] == small.n and spec["overrides"]["run.duration_h"] == 240
    assert small.abc.initial_epsilon is None and full.abc.initial_epsilon is None  # both start from pyabc's prior sample
    # the myeloid trait's median is fitted, and the burden prior comes from measured tumour volumes (1.5e10-1.5e11 inside it)
    assert "log10(patient.myeloid_cytokine_capacity.lognormal.median)" in small.abc_names
    burden = next(p for p in small.priors if p.name == "patient.tumor_burden_cells.lognormal.median")
    assert burden.kind == "loguniform" and burden.a <= 1.5e10 and 1.5e11 <= burden.b


# --------------------------------------------------------------------------- ABC-SMC end to end


def test_calibrate_end_to_end_then_resumed_continues_the_same_history(tmp_path, capsys):
    pytest.importorskip("pyabc")
    from carabm.hpc.calibrate import calibrate

    _write(tmp_path, "tiny.yaml", TINY)
    path = _write(tmp_path, "cal.yaml", CALIBRATION)
    out = tmp_path / "cal"
    distributed = pytest.importorskip("distributed")
    # the first generation on Dask (pyabc's DaskDistributedSampler; an in-process cluster stands in for Slurm's),
    # stopped after it as if the job had been killed
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        first = calibrate(path, out, generations=1, run_check=False, dask=client)
    assert (first.generations, first.new_generations) == (1, 1)
    import pyabc

    history = pyabc.History(f"sqlite:///{out / 'abc.db'}", _id=first.run_id)
    gen0, w0 = history.get_distribution(m=0, t=0)

    second = calibrate(path, out)  # the same folder, one local process: continues the History to abc.generations
    assert second.run_id == first.run_id and (second.generations, second.new_generations) == (2, 1)
    history = pyabc.History(f"sqlite:///{out / 'abc.db'}", _id=second.run_id)
    assert history.max_t == 1 and len(history.all_runs()) == 1
    again, w_again = history.get_distribution(m=0, t=0)
    np.testing.assert_array_equal(gen0.to_numpy(), again.to_numpy())  # generation 0 kept, not redone
    np.testing.assert_array_equal(w0, w_again)

    with (out / "posterior.csv").open(newline="") as f:
        posterior = list(csv.DictReader(f))
    assert [row["name"] for row in posterior] == ["patient.tumor_burden_cells.lognormal.median", "cytokines.IL6.secretion_scale"]
    for row, (low, high) in zip(posterior, ((1.0e9, 1.0e11), (0.5, 2.0))):  # within the prior, quantiles in order
        qs = [float(row[f"q{q:g}"]) for q in (0.025, 0.25, 0.5, 0.75, 0.975)]
        assert low <= qs[0] <= qs[1] <= qs[2] <= qs[3] <= qs[4] <= high and low <= float(row["mean"]) <= high
    diagnostics = (out / "diagnostics.csv").read_text().splitlines()
    assert diagnostics[0].startswith("generation,epsilon,simulations,particles,acceptance_rate,ess") and len(diagnostics) == 3
    sweep = load_sweep(out / "posterior_mean.yaml")  # usable by carabm sweep
    assert len(sweep) == 1 and sweep.members[0].config.cytokines.IL6.secretion_scale == pytest.approx(float(posterior[1]["mean"]))
    # the check cohort ran and was compared with the trial
    summary = (out / "cohort" / "summary.md").read_text()
    assert "## Cohort versus TOY" in summary
    assert {p.name for p in (out / "cohort" / "plots").glob("*.png")} == {"grades.png", "onset_days.png", "peak_il6_by_grade.png"}
    assert not list((out / "runs").glob("*/0000/run.*"))  # members' run files removed (keep_runs: false) ...
    particle = load_sweep(next((out / "runs").glob("*/sweep.yaml"))).members[0].config  # ... so they wrote only the ends
    assert particle.run.snapshot_every_h == particle.run.checkpoint_every_h == 1.0e6 and not particle.output.snapshot_agents
    assert list((out / "runs").glob("*/results.csv"))  # their summaries kept
    assert main(["collect", str(out)]) == 0  # a calibration folder: its posterior-mean cohort, next to the trial
    assert "## Cohort versus TOY" in capsys.readouterr().out

    calibrate(path, out)  # complete already: nothing new, the outputs rewritten
    changed = _write(tmp_path, "cal.yaml", _with("abc/population", 4))
    with pytest.raises(CarabmError, match="holds a calibration of another file"):
        calibrate(changed, out)


def test_a_cohort_whose_every_member_fails_stops_the_calibration(tmp_path, monkeypatch):
    """A fault of the setup (here: every step raises) stops with the members' error, not an endless resampling."""
    pytest.importorskip("pyabc")
    from carabm.hpc.calibrate import calibrate
    from carabm.simulation import Simulation

    def broken(self):
        raise OSError("No space left on device")

    monkeypatch.setattr(Simulation, "step", broken)
    _write(tmp_path, "tiny.yaml", TINY)
    path = _write(tmp_path, "cal.yaml", CALIBRATION)
    with pytest.raises(CarabmError, match="every member of the cohort failed, e.g. .*error.txt: .*No space left on device"):
        calibrate(path, tmp_path / "cal", run_check=False)
    assert len(list((tmp_path / "cal" / "runs").iterdir())) == 1  # stopped at the first particle


def test_statistics_are_known_names():
    assert set(STATISTICS) >= {"crs_any", "crs_grade3", "icans_any", "icans_grade3", "crs_onset_median_day",
                               "icans_onset_median_day", "complete_response"}  # fmt: skip


def test_set_changes_the_file_and_init_copies_it_with_its_base(tmp_path):
    from carabm.io.shipped import init_folder, shipped_configs

    assert shipped_configs()["calibration_zuma1"].kind == "calibration"
    cal = load_calibration(ROOT / "configs" / "calibration_zuma1.yaml", reduced=True,
                           settings=["abc.population=7", "cohort.overrides.run.duration_h=120"])  # fmt: skip
    assert cal.abc.population == 7 and cal.overrides["run.duration_h"] == 120 and cal.n == 10
    assert "lattice.shape" not in cal.overrides  # the reduced form keeps the quickstart lattice (a smaller one is another patient)
    written = {p.name for p in init_folder("calibration_zuma1", tmp_path)}
    assert {"calibration_zuma1.yaml", "quickstart.yaml", "README.md"} <= written
    assert "carabm calibrate calibration_zuma1.yaml --reduced" in (tmp_path / "README.md").read_text()
    assert load_calibration(tmp_path / "calibration_zuma1.yaml").base == str((tmp_path / "quickstart.yaml").resolve())


def test_slurm_jobs_start_only_after_the_folder_is_accepted_and_log_into_it(tmp_path, monkeypatch, capsys):
    """--slurm-jobs: a folder holding another calibration is refused before any Slurm job is submitted;
    an accepted one gets the worker jobs' logs (not the driver's working folder)."""
    from carabm.hpc import calibrate as cal_mod

    _write(tmp_path, "tiny.yaml", TINY)
    path = _write(tmp_path, "cal.yaml", CALIBRATION)
    other = tmp_path / "other"
    other.mkdir()
    (other / "calibration.json").write_text('{"fingerprint": "another file", "run_id": 1}\n')
    before = sorted(p.name for p in other.iterdir())
    started = []
    monkeypatch.setattr(cal_mod, "dask_client", lambda *args, **kwargs: started.append(kwargs) or pytest.fail("a Slurm job was started"))
    assert main(["calibrate", str(path), "--out", str(other), "--slurm-jobs", "2"]) == 2
    assert "holds a calibration of another file" in capsys.readouterr().err
    assert not started and sorted(p.name for p in other.iterdir()) == before

    def fake_client(address, jobs, slurm, log_directory=None):
        started.append((jobs, Path(log_directory)))
        raise CarabmError("stopped by the test before a cluster starts")

    monkeypatch.setattr(cal_mod, "dask_client", fake_client)
    assert main(["calibrate", str(path), "--out", str(tmp_path / "new"), "--slurm-jobs", "2"]) != 0
    assert "stopped by the test" in capsys.readouterr().err
    assert started == [(2, tmp_path / "new" / "logs" / "dask-workers")]


def test_slurm_settings_get_the_worker_log_folder_unless_they_set_one(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    import dask_jobqueue

    from carabm.hpc.calibrate import dask_client

    made = []

    class FakeCluster:
        def __init__(self, **settings):
            made.append(settings)

        def scale(self, jobs):
            raise RuntimeError("stop before a scheduler starts")

    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", FakeCluster)
    for section, expected in (({"cores": 2}, str(tmp_path / "logs")), ({"log_directory": "mine"}, "mine")):
        with pytest.raises(RuntimeError, match="stop before"):
            dask_client(slurm_jobs=1, slurm=section, log_directory=tmp_path / "logs")
        assert made[-1]["log_directory"] == expected and made[-1]["memory"] == "4GB"
