"""carabm report: the summary numbers against a run with known series, the table, CSV and readable PNGs."""

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest

from carabm.cli import main
from carabm.io.catalog import cell_names, cytokine_names
from carabm.io.config import load_config
from carabm.io.hdf5 import RunWriter
from carabm.io.report import _tick_text, cell_name, clipped_texts, display_units, figures, read_series, report, summarize
from carabm.simulation import build_lattice

ROOT = Path(__file__).parents[2]
DAY = 24.0


def synthetic_run(path, cleared=True, events=True):
    """A run file with series whose summary is known by construction (no simulation)."""
    t = np.arange(0, 10 * DAY + 1, 6.0)
    rows = {"time_h": t}
    for i, name in enumerate(cytokine_names()):
        rows[f"serum/{name}"] = (i + 1) * 100.0 * np.exp(-(((t - 3 * DAY) / 20.0) ** 2))  # peak (i+1)*100 at day 3
        rows[f"cns/{name}"] = rows[f"serum/{name}"] / 10
    for name in cell_names():
        rows[f"counts/{name}"] = np.full(t.size, 100, dtype=np.int64)
    rows["counts/cart"] = np.where(t <= 5 * DAY, t, 10 * DAY - t).astype(np.int64) + 1  # peak at day 5
    rows["crs_grade"] = np.select([t >= 4 * DAY, t >= 2 * DAY], [2, 1], 0).astype(np.int64)  # >=1 day 2, >=2 day 4
    rows["icans_grade"] = np.where((t >= 6 * DAY) & (t < 7 * DAY), 1, 0).astype(np.int64)  # grade 1 at day 6 only
    rows["tumor_burden"] = np.where(t >= 8 * DAY, 0, 50).astype(np.int64) if cleared else np.full(t.size, 50, dtype=np.int64)
    rows["bbb_integrity"] = 1.0 - 0.3 * np.exp(-(((t - 6 * DAY) / 30.0) ** 2))
    rows["blood_per_ul/cart"] = rows["counts/cart"] * 0.5
    if events:
        rows["drug/tocilizumab"] = np.where(t >= 96.0, 160.0 * 0.5 ** ((t - 96.0) / 72.0), 0.0)  # 560 mg into 3.5 L
        rows["drug_cns/tocilizumab"] = rows["drug/tocilizumab"] * 0.01
    config = load_config(ROOT / "configs" / "quickstart.yaml", ["lattice.shape=[6, 12, 24]", "cells.bcell.initial_count=50",
                                                                "cells.macrophage.initial_count=10", "cells.monocyte.initial_count=2"])
    with RunWriter(path) as writer:
        writer.write_header(config.to_yaml(), 1, "numpy", build_lattice(config))
        writer.append_timeseries(rows)
        if events:
            dtype = np.dtype([("time_h", "f8"), ("drug", h5py.string_dtype()), ("dose", "f8"), ("reason", h5py.string_dtype())])
            writer.file.create_dataset("therapy/events", data=np.array([(96.0, "tocilizumab", 560.0, "crs_grade >= 2")], dtype=dtype))
        writer.set_status("complete")
    return path


def test_summary_numbers_are_the_constructed_ones(tmp_path):
    s = summarize(read_series(synthetic_run(tmp_path / "a.h5")))
    for i, name in enumerate(cytokine_names()):
        assert s[f"peak_serum_{name}_pg_ml"] == pytest.approx((i + 1) * 100.0)
    assert s["max_crs_grade"] == 2 and s["crs_onset_day_grade_ge1"] == 2.0 and s["crs_onset_day_grade_ge2"] == 4.0
    assert s["max_icans_grade"] == 1 and s["icans_onset_day_grade_ge1"] == 6.0 and s["icans_onset_day_grade_ge2"] is None
    assert s["cart_peak_count"] == 5 * DAY + 1 and s["cart_peak_day"] == 5.0
    assert s["bcells_cleared_day"] == 8.0 and s["therapy_events"] == 1
    never = summarize(read_series(synthetic_run(tmp_path / "b.h5", cleared=False, events=False)))
    assert never["bcells_cleared_day"] is None and never["therapy_events"] == 0


def test_report_writes_table_csv_and_readable_pngs(tmp_path):
    import matplotlib.image

    a = synthetic_run(tmp_path / "with_tocilizumab.h5")
    b = synthetic_run(tmp_path / "no_therapy.h5", cleared=False, events=False)
    result = report([a, b], tmp_path / "out")
    assert "| max CRS grade (model surrogate) | 2 | 2 |" in result.markdown
    assert "| B cells cleared [day] | 8.00 | not cleared |" in result.markdown
    assert "| ICANS onset, grade >= 2 [day] | never | never |" in result.markdown
    with open(tmp_path / "out" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["run"] for r in rows] == ["with_tocilizumab", "no_therapy"] and rows[1]["bcells_cleared_day"] == ""
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["bbb_integrity.png", "cell_counts.png", "cns_cytokines.png", "drug_levels.png", "grades.png", "serum_cytokines.png"]
    for name in pngs:
        image = matplotlib.image.imread(tmp_path / "out" / name)
        assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0.01  # not blank


def test_report_cli_and_bad_files(tmp_path, capsys):
    good = synthetic_run(tmp_path / "good.h5")
    assert main(["report", str(good), "--out", str(tmp_path / "rep")]) == 0
    assert "peak serum IL6 [pg/mL]" in capsys.readouterr().out
    text = tmp_path / "notes.h5"
    text.write_text("x")
    for path, expected in ((tmp_path / "missing.h5", "no such file"), (text, "not an HDF5 file")):
        assert main(["report", str(good), str(path), "--out", str(tmp_path / "rep2")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err and str(path) in err
    assert not (tmp_path / "rep2").exists()  # nothing written when a file is bad


@pytest.mark.parametrize("n_runs", [1, 2])
def test_no_label_reaches_outside_a_figure(tmp_path, n_runs):
    files = [synthetic_run(tmp_path / "with_tocilizumab.h5"), synthetic_run(tmp_path / "no_therapy.h5", events=False)][:n_runs]
    runs = [read_series(p) for p in files]
    for name, fig in figures(runs).items():
        assert clipped_texts(fig) == [], name


def test_a_label_outside_the_figure_is_found():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # no room left for tick labels or the y label
    ax.set_ylabel("cells")
    fig.canvas.draw()
    assert "cells" in clipped_texts(fig)


def test_drug_panel_plasma_and_cns_with_units_and_doses(tmp_path):
    runs = [read_series(synthetic_run(tmp_path / "with_tocilizumab.h5")), read_series(synthetic_run(tmp_path / "none.h5", events=False))]
    (ax,) = [a for a in figures(runs)["drug_levels.png"].axes if a.get_visible()]
    assert ax.get_title() == "tocilizumab" and ax.get_yscale() == "log"
    assert "µg/mL" in ax.get_ylabel()
    styles = sorted(line.get_linestyle() for line in ax.get_lines() if len(line.get_xdata()) > 2)
    assert styles == ["-", "--"]  # plasma and CNS of the one run that has the drug
    assert any(text.get_text() == "tocilizumab 560 mg" for text in ax.texts)
    empty = figures(runs[1:])["drug_levels.png"]
    assert any("no drug given" in text.get_text() for a in empty.axes for text in a.texts)


def test_counts_say_agents_or_patient_blood_counts(tmp_path):
    runs = [read_series(synthetic_run(tmp_path / "a.h5"))]
    titles = [a.get_title() for a in figures(runs)["cell_counts.png"].axes if a.get_visible()]
    assert titles[: len(cell_names())] == [f"{cell_name(c)} (agents)" for c in cell_names()]
    assert titles[len(cell_names()) :] == ["CAR-T in blood (cells/µL)"]  # the synthetic run has no monocyte blood count


@pytest.mark.parametrize(("value", "text"), [(0.01, "0.01"), (0.5, "0.5"), (1.0, "1"), (200.0, "200"), (20000.0, "20,000"),
                                             (1e6, "1e6"), (1e-5, "1e-5")])  # fmt: skip
def test_log_ticks_are_plain_numbers_in_everyday_range(value, text):
    assert _tick_text(value) == text


@pytest.mark.parametrize(("units", "shown"), [("ug mL-1", "µg/mL"), ("pg mL-1", "pg/mL"), ("uL-1", "cells/µL"), ("ug/mL", "µg/mL"),
                                              ("h", "h"), ("um", "µm")])  # fmt: skip
def test_units_are_shown_as_people_write_them(units, shown):
    assert display_units(units) == shown
