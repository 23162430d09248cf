"""The end-of-run summary: known series give known numbers; run, report and the API show the same summary."""

from pathlib import Path

import numpy as np
import pytest

import carabm
from carabm.cli import main
from carabm.io.catalog import cell_names, cytokine_names
from carabm.io.config import load_config
from carabm.io.hdf5 import RunWriter
from carabm.io.summary import DETECTABLE_TUMOUR_CELLS, RunSummary, grade_course, run_summary, tumour_response
from carabm.simulation import build_lattice

ROOT = Path(__file__).parents[2]
QUICK = ROOT / "configs" / "quickstart.yaml"
DAY = 24.0
TINY = ["lattice.shape=[6, 12, 24]", "run.duration_h=1", "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10",
        "cells.monocyte.initial_count=2", "cells.microglia.initial_count=5", "run.backend=numpy"]  # fmt: skip


def test_grade_course_by_hand():
    t = np.arange(0.0, 11 * DAY, 12.0)  # rows every half day
    grade = np.select([(t >= 4 * DAY) & (t < 5 * DAY), (t >= 2 * DAY) & (t < 6 * DAY)], [2, 1], 0)
    course = grade_course(t, grade)
    assert course.max_grade == 2
    assert course.onset_day == pytest.approx(2.0)
    assert course.max_grade_day == pytest.approx(4.0)
    # rows at day 2.0 .. 5.5 are >= 1: 8 rows, each standing for the half day that ended at it
    assert course.days_at_grade_ge1 == pytest.approx(4.0)
    assert not course.ongoing and course.resolved_day == pytest.approx(6.0)
    still = grade_course(t, np.where(t >= 9 * DAY, 3, 0))
    assert still.ongoing and still.max_grade == 3 and still.onset_day == pytest.approx(9.0) and still.resolved_day is None
    none = grade_course(t, np.zeros(t.size, dtype=int))
    assert none.max_grade == 0 and none.onset_day is None and none.days_at_grade_ge1 == 0.0


def synthetic_run(path):
    """A run file whose summary is known by construction: written by RunWriter, no simulation."""
    t = np.arange(0, 10 * DAY + 1, 6.0)
    rows = {"time_h": t}
    for name in cytokine_names():
        rows[f"serum/{name}"] = np.zeros(t.size)
        rows[f"cns/{name}"] = np.zeros(t.size)
    rows["serum/IL6"] = 800.0 * np.exp(-(((t - 3 * DAY) / 20.0) ** 2))  # peak 800 pg/mL at day 3
    for name in cell_names():
        rows[f"counts/{name}"] = np.full(t.size, 100, dtype=np.int64)
    rows["blood_per_ul/cart"] = np.where(t <= 5 * DAY, 2.0 + t, 2.0 + 10 * DAY - t)  # 2/uL, peak 122/uL at day 5
    rows["crs_grade"] = np.select([t >= 4 * DAY, t >= 2 * DAY], [2, 1], 0).astype(np.int64)
    rows["icans_grade"] = np.zeros(t.size, dtype=np.int64)
    rows["tumor_burden"] = np.where(t >= 8 * DAY, 0, 400).astype(np.int64)
    config = load_config(QUICK, [*TINY, "run.duration_h=240"])  # (cells that fit the small lattice)
    with RunWriter(path) as writer:
        writer.write_header(config.to_yaml(), 1, "numpy", build_lattice(config))
        writer.append_timeseries(rows)
        writer.write_events([(50.0, "tocilizumab", 560.0, "crs_grade >= 2"), (60.0, "dexamethasone", 10.0, "icans"),
                             (62.0, "tocilizumab", 560.0, "crs_grade >= 2")])  # fmt: skip
        writer.set_status("complete", wall_s=12.0, wall_steps=2400)
    return path


def test_summary_of_known_series(tmp_path):
    s = run_summary(synthetic_run(tmp_path / "known.h5"))
    assert s.status == "complete" and s.simulated_days == pytest.approx(10.0)
    assert s.steps == 2400  # 240 h of 6-min steps, from the stored config
    assert s.crs.max_grade == 2 and s.crs.onset_day == pytest.approx(2.0) and s.crs.max_grade_day == pytest.approx(4.0)
    # rows at 48 h .. 240 h (33 rows of 6 h, each standing for the 6 h that ended at it) are at grade >= 1
    assert s.crs.days_at_grade_ge1 == pytest.approx(33 * 6 / DAY) and s.crs.ongoing
    assert s.icans.max_grade == 0 and s.icans.onset_day is None
    assert s.il6_peak_pg_ml == pytest.approx(800.0) and s.il6_peak_day == pytest.approx(3.0)
    assert s.cart_peak_per_ul == pytest.approx(122.0) and s.cart_peak_day == pytest.approx(5.0)
    assert s.cart_fold == pytest.approx(61.0)
    assert (s.bcells_start, s.bcells_end) == (400, 0) and s.bcells_cleared_day == pytest.approx(8.0)
    assert (s.response.end, s.response.best) == ("CR", "CR") and s.response.residual_cells == 0.0
    assert [(t.drug, t.doses) for t in s.therapies] == [("tocilizumab", 2), ("dexamethasone", 1)]
    assert s.therapies[0].first_day == pytest.approx(50.0 / DAY) and s.therapies[0].first_reason == "crs_grade >= 2"
    assert s.wall_s == 12.0 and s.ms_per_step == pytest.approx(5.0)
    assert s.files == [str(tmp_path / "known.h5")]  # no .xmf or .ckpt beside this one
    text = s.text()
    assert "max grade 2 (model surrogate)" in text and "800 pg/mL on day 3.0" in text
    assert "tocilizumab: 2 doses, first on day 2.1 (crs_grade >= 2)" in text
    assert "Response complete response at the end (model surrogate of Lugano)" in text
    assert f"carabm render {tmp_path / 'known.h5'} --out {tmp_path / 'known.mp4'}" in text


def test_run_report_and_api_give_the_same_summary(tmp_path, capsys):
    out = tmp_path / "tiny.h5"
    result = carabm.run(load_config(QUICK, TINY), out=out, progress=False)
    for key in ("out", "steps", "steps_run", "time_h", "wall_s", "backend", "final"):  # the keys scripts already use
        assert key in result
    summary = result["summary"]
    assert isinstance(summary, RunSummary)
    assert summary.steps == result["steps"] == 10 and summary.backend == "numpy"
    assert summary.wall_s == pytest.approx(result["wall_s"])
    assert summary.files == [str(out), str(tmp_path / "tiny.xmf"), str(tmp_path / "tiny.h5.ckpt")]
    assert summary.bcells_start == 50
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    assert summary.text(next_steps=False) in printed
    assert f"carabm render {out}" in printed and f"carabm report {out}" not in printed  # no need to say it again


def test_report_of_several_runs_prints_each_summary(tmp_path, capsys):
    a, b = synthetic_run(tmp_path / "a.h5"), synthetic_run(tmp_path / "b.h5")
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    for path in (a, b):
        assert run_summary(path).text(next_steps=False) in printed
    assert "Next" not in printed  # several runs: no per-file suggestions


def test_summary_of_a_schema1_file_and_of_a_short_run():
    """An old (schema 1) file still gets its summary; a run under two days speaks in hours."""
    s = run_summary(ROOT / "tests" / "data" / "run_schema1.h5")
    assert s.simulated_days == pytest.approx(2 / DAY)
    assert [(t.drug, t.doses) for t in s.therapies] == [("tocilizumab", 1), ("dexamethasone", 1)]
    assert s.therapies[0].first_day == pytest.approx(0.5 / DAY)  # its config gives tocilizumab at start_h 0.5
    text = s.text()
    assert "2 h simulated" in text and "tocilizumab: 1 dose, first at hour 0.5" in text


# --------------------------------------------------------------------------- tumour response (model surrogate of Lugano)


def test_tumour_response_categories_by_hand():
    t = np.arange(0.0, 10 * DAY + 1, 12.0)
    start = 1000.0
    # cleared: complete response at the end and at best
    gone = tumour_response(t, np.where(t >= 5 * DAY, 0, start))
    assert (gone.end, gone.best) == ("CR", "CR") and gone.end_fraction == 0.0 and gone.nadir_day == pytest.approx(5.0)
    # SPD ~ N^(2/3): N/N0 = 0.3 is an SPD of 0.45 (a >= 50 % fall: PR); 0.4 is 0.54 (not enough: SD)
    assert tumour_response(t, np.where(t >= 2 * DAY, 0.3 * start, start)).end == "PR"
    assert tumour_response(t, np.where(t >= 2 * DAY, 0.4 * start, start)).end == "SD"
    # growth: N/N0 = 2 is an SPD of 1.59 (>= 1.5: PD); 1.7 is 1.42 (SD)
    assert tumour_response(t, start * np.where(t >= 2 * DAY, 2.0, 1.0)).end == "PD"
    assert tumour_response(t, start * np.where(t >= 2 * DAY, 1.7, 1.0)).end == "SD"
    # a response, then regrowth to 2x the nadir (SPD 1.59x): PD at the end, PR at best
    relapse = tumour_response(t, start * np.select([t >= 7 * DAY, t >= 3 * DAY], [0.2, 0.1], 1.0))
    assert (relapse.end, relapse.best) == ("PD", "PR") and relapse.nadir_fraction == pytest.approx(0.1)


def test_tumour_response_uses_the_patients_residual_tumour():
    t = np.arange(0.0, 4 * DAY + 1, 12.0)
    burden = np.where(t >= 2 * DAY, 5, 1000)  # 0.5 % of the start left on the lattice
    assert tumour_response(t, burden).end == "PR"  # patient unknown: only an empty lattice is a CR
    small = tumour_response(t, burden, tumour_cells=1e10)  # 5e7 cells left: below the detectable residual
    assert small.end == "CR" and small.residual_cells == pytest.approx(5e7)
    big = tumour_response(t, burden, tumour_cells=1e12)  # 5e9 cells left: measurable, but SPD far below half
    assert big.end == "PR" and big.residual_cells == pytest.approx(5e9)
    # a 1e10-cell patient whose few residual cells double stays a CR (not a relapse) while undetectable
    assert tumour_response(t, np.where(t >= 3 * DAY, 10, burden), tumour_cells=1e10).end == "CR"
    assert tumour_response(t, burden, tumour_cells=DETECTABLE_TUMOUR_CELLS).end == "NE"  # nothing measurable at the start
    assert tumour_response(t, np.zeros(t.size)).end == "NE"
