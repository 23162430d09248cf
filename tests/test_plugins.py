"""Plug-ins: the CAR-NK example end to end (run, HDF5 codes, resume, report, render), a plug-in
adding a cytokine, a drug and a rule layer, and the errors of a missing plug-in."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from carabm.cli import main as carabm_main
from carabm.errors import ConfigError
from carabm.io.catalog import CATALOG, cell_names
from carabm.io.config import load_config

ROOT = Path(__file__).parents[1]
CARNK = ROOT / "examples" / "plugins" / "carnk.yaml"
#: a small, busy CAR-NK run: many cells home fast onto a small tumour
SMALL = ["lattice.shape=[6,16,30]", "cells.bcell.initial_count=150", "cells.macrophage.initial_count=30",
         "cells.monocyte.initial_count=5", "cells.microglia.initial_count=10", "cells.carnk.dose=2e10",
         "cells.carnk.homing_per_h=30", "run.backend=numpy", "run.checkpoint_every_h=2", "run.snapshot_every_h=1"]  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_catalog():
    """Each test starts with the built-in model only, as a new process would."""
    saved = CATALOG.snapshot()
    yield saved
    CATALOG.restore(saved)


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = carabm_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_carnk(capsys, out: Path, hours: float, config: Path = CARNK, *extra: str) -> None:
    sets = [arg for s in SMALL + [f"run.duration_h={hours}", *extra] for arg in ("--set", s)]
    code, _, err = cli(capsys, "run", config, "--out", out, "-q", *sets)
    assert code == 0, err


def test_carnk_run_writes_its_cells_and_codes(tmp_path, capsys):
    out = tmp_path / "nk.h5"
    run_carnk(capsys, out, 3)
    assert cell_names()[-1] == "carnk"  # after the built-ins: their type codes are unchanged
    with h5py.File(out) as f:
        assert str(CARNK.parent / "carnk.py") in f["config"][()].decode()  # the plug-in is recorded, as an absolute path
        ts = f["timeseries"]
        assert ts["counts/carnk"][0] > 200 and ts["counts/cart"][-1] == 0
        assert ts["activated/carnk"][()].max() > 0 and "blood_per_ul/carnk" in ts
        agents = f["snapshots/agents"]
        assert agents["type"].attrs["code_carnk"] == 5 and agents["type"].attrs["code_cart"] == 0
        assert agents["state"].attrs["codes_carnk"] == "0=resting, 1=activated, 2=exhausted"
        last = slice(int(agents["count"][:-1].sum()), None)
        is_nk = agents["type"][last] == 5
        assert is_nk.sum() > 0  # homed onto the lattice
        assert agents["kills"][last][is_nk].sum() > 0  # and killed B cells


def test_carnk_resume_continues_as_the_uninterrupted_run(tmp_path, capsys, fresh_catalog):
    whole, part, branch = tmp_path / "whole.h5", tmp_path / "part.h5", tmp_path / "branch.h5"
    run_carnk(capsys, whole, 3)
    run_carnk(capsys, part, 2)  # its last checkpoint: at 2 h
    CATALOG.restore(fresh_catalog)  # as a new process: the plug-in is not loaded
    code, _, err = cli(capsys, "run", "--resume", part, "--set", "run.duration_h=3", "--out", branch, "-q")
    assert code == 0, err
    with h5py.File(whole) as a, h5py.File(branch) as b:
        for name in ("counts/carnk", "activated/carnk", "tumor_burden", "serum/IFNg"):
            np.testing.assert_array_equal(a["timeseries"][name][()], b["timeseries"][name][()])


def test_resume_names_a_missing_plugin(tmp_path, capsys, fresh_catalog):
    shutil.copy(CARNK.parent / "carnk.py", tmp_path / "carnk.py")
    shutil.copy(CARNK, tmp_path / "carnk.yaml")
    out = tmp_path / "nk.h5"
    run_carnk(capsys, out, 1, tmp_path / "carnk.yaml")
    (tmp_path / "carnk.py").unlink()
    CATALOG.restore(fresh_catalog)  # as a new process: the plug-in is not loaded
    code, _, err = cli(capsys, "run", "--resume", out, "--set", "run.duration_h=2", "--out", tmp_path / "more.h5")
    assert code == 2
    assert err.strip().count("\n") == 0 and "plugins[0]: cannot load plug-in" in err and "no such file" in err
    assert "Traceback" not in err


def test_carnk_report_and_render(tmp_path, capsys):
    out = tmp_path / "nk.h5"
    run_carnk(capsys, out, 2)
    code, _, err = cli(capsys, "report", out, "--out", tmp_path / "report")
    assert code == 0, err
    assert (tmp_path / "report" / "counts.png").exists() or any((tmp_path / "report").glob("*.png"))
    from carabm.viewer.scene import RunScene  # noqa: PLC0415

    scene = RunScene(out)
    assert scene.cell_types[-1] == "carnk"
    assert ("carnk", CATALOG.cell_types["carnk"].colour) in scene.legend_lines()
    frame = scene.frame(len(scene) - 1)
    assert len(frame.cells["carnk"]) > 0 and set(frame.states["carnk"]) <= {0, 1, 2}
    code, _, err = cli(capsys, "render", out, "--out", tmp_path / "frames", "--backend", "matplotlib", "--size", "320x240", "--no-progress")
    assert code == 0, err
    assert len(list((tmp_path / "frames").glob("*.png"))) == len(scene)


PLUGIN = '''
from carabm.biology.api import Cytokine, Drug, Layer, register_cytokine, register_drug, register_layer

register_cytokine(Cytokine("IL15", "interleukin-15", 100.0, 0.5, 1.0))
register_drug(Drug("clazakizumab", "IL6", None, 12.5, None, "iv", 30 * 24.0, 0.07, None, 1.0, 1.0, 0.002))


def bcells_secrete_il15(model):
    model.secretion.add("IL15", model.voxels(), model.mask_of("bcell"), 1e-3)


register_layer(Layer("bcell:il15", "secrete", bcells_secrete_il15))
'''


def test_a_plugin_adds_a_cytokine_a_drug_and_a_layer(tmp_path):
    (tmp_path / "extra.py").write_text(PLUGIN)
    (tmp_path / "run.yaml").write_text("plugins: [extra.py]\ntherapies: [{drug: clazakizumab, start_h: 0}]\n"
                                        "output: {snapshot_fields: [IL15, IL6]}\n")  # fmt: skip
    config = load_config(tmp_path / "run.yaml", [s for s in SMALL if "carnk" not in s] + ["run.duration_h=1"])
    assert config.cytokines.IL15.half_life_h == 0.5 and config.plugins == [str(tmp_path / "extra.py")]
    from carabm.simulation import run  # noqa: PLC0415

    result = run(config, out=tmp_path / "run.h5", progress=False)
    assert result["final"]["serum/IL15"] > 0 and result["final"]["drug/clazakizumab"] > 0
    with h5py.File(tmp_path / "run.h5") as f:
        assert f["snapshots/IL15"].shape[1:] == (6, 16, 30)


def test_unknown_plugin_and_unknown_cytokine_are_one_line_each(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("plugins: [no_such_lab.carnk]\n")
    code, _, err = cli(capsys, "validate", tmp_path / "run.yaml")
    assert code == 2 and "plugins[0]: cannot load plug-in 'no_such_lab.carnk' (ModuleNotFoundError" in err
    (tmp_path / "bad.yaml").write_text("cells: {cart: {secretion_pg_cell_h: {IL15: 1}}}\n")
    code, _, err = cli(capsys, "validate", tmp_path / "bad.yaml")
    assert code == 2 and "cells.cart.secretion_pg_cell_h.IL15: unknown cytokine 'IL15'" in err


def test_a_config_without_the_loaded_plugin_is_refused(tmp_path):
    shutil.copy(CARNK.parent / "carnk.py", tmp_path / "carnk.py")
    (tmp_path / "nk.yaml").write_text("plugins: [carnk.py]\n")
    assert load_config(tmp_path / "nk.yaml").cells.carnk.dose == 7e8
    with pytest.raises(ConfigError, match=r"plugins: this process has loaded '.*carnk.py', which this config does not name"):
        load_config(None)
