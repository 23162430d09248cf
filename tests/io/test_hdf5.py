"""HDF5 output: layout and attributes of the contract, flushing, readers, and bad-file errors."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import carabm
from carabm.errors import InputFileError
from carabm.io.config import CELL_TYPES, CYTOKINES, load_config
from carabm.io.hdf5 import RunWriter, Snapshots, check_run_file, open_run

ROOT = Path(__file__).parents[2]
QUICK = ROOT / "configs" / "quickstart.yaml"
SMALL = ["lattice.shape=[6, 12, 24]", "run.duration_h=4", "run.snapshot_every_h=2", "run.checkpoint_every_h=2",
         "cells.bcell.initial_count=50", "cells.macrophage.initial_count=10", "cells.monocyte.initial_count=2",
         "cells.microglia.initial_count=5", "run.backend=numpy"]  # fmt: skip


def small_config(*extra):
    return load_config(QUICK, SMALL + list(extra))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "small.h5"
    carabm.run(small_config(), out=out)
    return out


def test_root_attributes_config_and_lattice(small_run):
    with h5py.File(small_run) as f:
        assert f.attrs["carabm_version"] == carabm.__version__
        assert f.attrs["schema_version"] == carabm.SCHEMA_VERSION
        assert f.attrs["status"] == "complete"
        assert len(f.attrs["run_id"]) == 32
        assert f.attrs["seed"] == 1 and f.attrs["backend"] == "numpy"
        assert "shape:" in f["config"][()].decode()
        comp = f["lattice/compartment"]
        assert comp.shape == (6, 12, 24) and comp.attrs["voxel_um"] == 20.0 and comp.attrs["axes"] == "z, y, x"


def test_timeseries_rows_units_and_descriptions(small_run):
    config = small_config()
    with h5py.File(small_run) as f:
        ts = f["timeseries"]
        rows = config.run.n_steps + 1
        np.testing.assert_allclose(ts["time_h"][()], np.arange(rows) * config.run.dt_min / 60.0)
        for name in CELL_TYPES:
            assert ts[f"counts/{name}"].shape == (rows,) and ts[f"counts/{name}"].attrs["units"] == "cells"
        for name in CYTOKINES:
            for where in ("serum", "cns"):
                ds = ts[f"{where}/{name}"]
                assert ds.attrs["units"] == "pg/mL" and ds.attrs["description"]
                assert ds.compression == "gzip" and ds.maxshape == (None,)
        assert "model surrogate" in ts["crs_grade"].attrs["units"]
        assert ts["tumor_burden"].attrs["description"] == "B cells alive on the lattice"


def test_snapshots_chunked_compressed_with_codes(small_run):
    with h5py.File(small_run) as f:
        names = sorted(f["snapshots"])
        assert names == ["000000", "000020", "000040"]  # every 2 h at dt 6 min, and the end
        assert [f[f"snapshots/{n}"].attrs["time_h"] for n in names] == [0.0, 2.0, 4.0]
        snap = f["snapshots/000040"]
        for name in CYTOKINES:
            ds = snap[f"fields/{name}"]
            assert ds.shape == (6, 12, 24) and ds.dtype == np.float32
            assert ds.chunks is not None and ds.compression == "gzip" and ds.attrs["units"] == "pg/mL"
        assert snap["bbb_integrity"].attrs["units"].startswith("1")
        agents = snap["agents"]
        kinds = agents["type"]
        assert kinds.attrs["codes"] == "0=cart, 1=bcell, 2=macrophage, 3=monocyte, 4=microglia"
        assert all(kinds.attrs[f"code_{name}"] == i for i, name in enumerate(CELL_TYPES))
        assert "cart: 0=resting, 1=activated, 2=exhausted" in agents["state"].attrs["codes"]
        assert agents["position"].dtype == np.int32 and agents["position"].attrs["order"].startswith("z, y, x")
        n = agents["id"].shape[0]
        assert n > 0 and all(agents[c].shape[0] == n for c in ("position", "type", "state", "xyz_um"))
        np.testing.assert_array_equal(agents["xyz_um"][()], (agents["position"][()][:, ::-1] + 0.5) * 20.0)


def test_open_run_is_the_time_series(small_run):
    ds = carabm.open_run(small_run)
    with h5py.File(small_run) as f:
        np.testing.assert_array_equal(ds["time_h"].values, f["timeseries/time_h"][()])
        np.testing.assert_array_equal(ds["serum_IL6"].values, f["timeseries/serum/IL6"][()])
        np.testing.assert_array_equal(ds["count_cart"].values, f["timeseries/counts/cart"][()])
    assert ds["serum_IL6"].attrs["units"] == "pg/mL"
    assert ds.attrs["status"] == "complete"


def test_lazy_snapshot_reader(small_run):
    snaps = Snapshots(small_run)
    assert len(snaps) == 3
    np.testing.assert_array_equal(snaps.times_h, [0.0, 2.0, 4.0])
    last = snaps[-1]
    assert last["time_h"] == 4.0 and last["step"] == 40
    assert set(last["fields"]) == set(CYTOKINES) and last["fields"]["IL6"].shape == (6, 12, 24)
    assert last["bbb_integrity"].shape == (6, 12, 24)
    assert set(last["agents"]) >= {"id", "position", "type", "state"}
    assert [s["time_h"] for s in snaps] == [0.0, 2.0, 4.0]
    with pytest.raises(IndexError):
        snaps[3]


def test_writer_flushes_so_an_open_file_is_readable(tmp_path, small_run):
    """While a writer still holds the file, another reader sees everything up to the last flush."""
    path = tmp_path / "open.h5"
    writer = RunWriter(path)
    try:
        from carabm.simulation import build_lattice

        writer.write_header("x: 1\n", 1, "numpy", build_lattice(small_config()))
        writer.append_timeseries({"time_h": np.arange(3.0), "serum/IL6": np.ones(3)})
        assert open_run(path).sizes["time_h"] == 3  # read while the writer holds it (no HDF5 lock taken)
        writer.append_timeseries({"time_h": np.arange(3.0, 5.0), "serum/IL6": np.ones(2)})
        copy = tmp_path / "copy.h5"
        shutil.copy(path, copy)  # what a killed run leaves behind
        ds = open_run(copy)
        assert ds.sizes["time_h"] == 5 and ds.attrs["status"] == "running"
    finally:
        writer.close()


def _bad_files(tmp_path, good):
    missing = tmp_path / "missing.h5"
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all\n")
    truncated = tmp_path / "truncated.h5"
    data = Path(good).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    newer = tmp_path / "newer.h5"
    shutil.copy(good, newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = carabm.SCHEMA_VERSION + 1
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.attrs["carabm_version"] = carabm.__version__
        f.attrs["schema_version"] = carabm.SCHEMA_VERSION
    return {"no such file": missing, "not an HDF5 file": text, "truncated": truncated,
            "not a carabm run output": foreign, "newer carabm": newer, "without time series": empty}  # fmt: skip


def test_bad_files_get_one_clear_line(tmp_path, small_run):
    for expected, path in _bad_files(tmp_path, small_run).items():
        with pytest.raises(InputFileError) as info:
            check_run_file(path)
        message = str(info.value)
        assert expected in message and str(path) in message and "\n" not in message, message


def test_example_notebook_is_valid_nbformat():
    nb = json.loads((ROOT / "docs" / "example_notebook.ipynb").read_text())
    assert nb["nbformat"] == 4 and nb["cells"]
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            compile("".join(cell["source"]).replace("%matplotlib inline", ""), "<cell>", "exec")
    sources = "".join("".join(c["source"]) for c in nb["cells"])
    assert "carabm.open_run" in sources and "Snapshots" in sources
