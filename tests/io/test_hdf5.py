"""HDF5 output: layout and attributes of the contract, flushing, readers, and bad-file errors."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import carabm
from carabm.errors import InputFileError
from carabm.io.catalog import cell_names, cytokine_names
from carabm.io.config import load_config
from carabm.io.hdf5 import RunWriter
from carabm.io.runfile import Snapshots, check_run_file, open_run

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
        assert ts["time_h"].is_scale and ts["time_h"].attrs["units"] == "h"
        for name in cell_names():
            assert ts[f"counts/{name}"].shape == (rows,) and ts[f"counts/{name}"].attrs["units"] == "1"
            assert ts[f"counts/{name}"].dims[0][0] == ts["time_h"]  # attached to the time coordinate
        for name in cytokine_names():
            for where in ("serum", "cns"):
                ds = ts[f"{where}/{name}"]
                assert ds.attrs["units"] == "pg mL-1" and ds.attrs["description"] and ds.attrs["long_name"] == f"{where.upper() if where == 'cns' else where} {name}"
                assert ds.compression == "gzip" and ds.maxshape == (None,)
        assert "model surrogate" in ts["crs_grade"].attrs["description"]
        assert list(ts["crs_grade"].attrs["valid_range"]) == [0, 4]
        assert ts["tumor_burden"].attrs["description"] == "B cells alive on the lattice"


def test_snapshots_chunked_compressed_with_codes(small_run):
    with h5py.File(small_run) as f:
        snaps = f["snapshots"]
        assert list(snaps["step"][()]) == [0, 20, 40]  # every 2 h at dt 6 min, and the end
        assert list(snaps["time_h"][()]) == [0.0, 2.0, 4.0]
        assert snaps["time_h"].maxshape == (None,)
        np.testing.assert_allclose(snaps["x"][()], (np.arange(24) + 0.5) * 20.0)
        for name in cytokine_names():
            ds = snaps[name]
            assert ds.shape == (3, 6, 12, 24) and ds.dtype == np.float32 and ds.maxshape == (None, 6, 12, 24)
            assert ds.chunks == (1, 6, 12, 24) and ds.compression == "gzip" and ds.attrs["units"] == "pg mL-1"
            assert [d[0].name.rsplit("/", 1)[1] for d in ds.dims] == ["time_h", "z", "y", "x"]
        assert snaps["bbb_integrity"].attrs["units"] == "1" and snaps["bbb_integrity"].shape == (3, 6, 12, 24)
        agents = snaps["agents"]
        counts = agents["count"][()]
        assert agents["count"].attrs["sample_dimension"] == "agent" and len(counts) == 3 and counts.min() > 0
        kinds = agents["type"]
        assert kinds.shape == (counts.sum(),)
        assert kinds.attrs["codes"] == "0=cart, 1=bcell, 2=macrophage, 3=monocyte, 4=microglia"
        assert kinds.attrs["flag_meanings"] == "cart bcell macrophage monocyte microglia"
        assert all(kinds.attrs[f"code_{name}"] == i for i, name in enumerate(cell_names()))
        assert "cart: 0=resting, 1=activated, 2=exhausted" in agents["state"].attrs["codes"]
        assert agents["position"].dtype == np.int32 and agents["position"].attrs["order"].startswith("z, y, x")
        n = agents["id"].shape[0]
        assert all(agents[c].shape[0] == n for c in ("position", "type", "state", "xyz_um"))
        np.testing.assert_array_equal(agents["xyz_um"][()], (agents["position"][()][:, ::-1] + 0.5) * 20.0)


def test_every_variable_has_units_long_name_and_description(small_run):
    """CF metadata on every array (text columns carry no units, as CF asks; netCDF dimensions carry none)."""
    missing = []

    def check(name, obj):
        if not isinstance(obj, h5py.Dataset) or obj.attrs.get("CLASS") == b"DIMENSION_SCALE" and not obj.attrs.get("units"):
            return
        wanted = ("long_name", "description") + (("units",) if obj.dtype.kind in "biuf" else ())
        missing.extend(f"{name}:{key}" for key in wanted if not obj.attrs.get(key))
        if obj.ndim and obj.attrs.get("DIMENSION_LIST") is None and not obj.is_scale:
            missing.append(f"{name}:dimensions")

    with h5py.File(small_run) as f:
        f.visititems(check)
        assert f.attrs["Conventions"] == "CF-1.10"
    assert missing == []


def test_xarray_opens_the_groups_without_carabm(small_run):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    with xr.open_dataset(small_run, group="timeseries", engine="h5netcdf") as ts:
        assert ts["crs_grade"].dims == ("time_h",) and ts["time_h"].attrs["units"] == "h"
        assert ts["time_h"].dtype == np.float64  # units "h": not decoded to timedelta
        np.testing.assert_array_equal(ts["crs_grade"].values, carabm.open_run(small_run)["crs_grade"].values)
    tree = xr.open_datatree(small_run, group="timeseries", engine="h5netcdf")
    serum = tree["serum"].to_dataset(inherit=True)
    np.testing.assert_array_equal(serum["IL6"].values, carabm.open_run(small_run)["serum_IL6"].values)
    assert serum["IL6"].attrs["units"] == "pg mL-1" and "time_h" in serum.coords
    snaps = Snapshots(small_run)
    with xr.open_dataset(small_run, group="snapshots", engine="h5netcdf") as ds:
        assert ds["IL6"].dims == ("time_h", "z", "y", "x") and ds.attrs["description"]
        np.testing.assert_array_equal(ds["time_h"].values, snaps.times_h)
        np.testing.assert_array_equal(ds["IL6"].sel(time_h=2.0).values, snaps[1]["fields"]["IL6"])
        assert float(ds["x"][0]) == 10.0 and ds["x"].attrs["units"] == "um"
    with xr.open_dataset(small_run, group="snapshots/agents", engine="h5netcdf") as agents:
        ends = np.cumsum(agents["count"].values)
        np.testing.assert_array_equal(agents["id"].values[ends[0] : ends[1]], snaps[1]["agents"]["id"])
    with xr.open_dataset(small_run, group="lattice", engine="h5netcdf") as lattice:
        assert lattice["compartment"].dims == ("z", "y", "x") and lattice["compartment"].attrs["flag_meanings"]


def test_open_run_is_the_time_series(small_run):
    ds = carabm.open_run(small_run)
    with h5py.File(small_run) as f:
        np.testing.assert_array_equal(ds["time_h"].values, f["timeseries/time_h"][()])
        np.testing.assert_array_equal(ds["serum_IL6"].values, f["timeseries/serum/IL6"][()])
        np.testing.assert_array_equal(ds["count_cart"].values, f["timeseries/counts/cart"][()])
    assert ds["serum_IL6"].attrs["units"] == "pg mL-1" and ds["serum_IL6"].attrs["long_name"] == "serum IL6"
    assert "DIMENSION_LIST" not in ds["serum_IL6"].attrs and ds.attrs["Conventions"] == "CF-1.10"
    assert ds.attrs["status"] == "complete"


def test_lazy_snapshot_reader(small_run):
    snaps = Snapshots(small_run)
    assert len(snaps) == 3
    np.testing.assert_array_equal(snaps.times_h, [0.0, 2.0, 4.0])
    last = snaps[-1]
    assert last["time_h"] == 4.0 and last["step"] == 40
    assert set(last["fields"]) == set(cytokine_names()) and last["fields"]["IL6"].shape == (6, 12, 24)
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


# --------------------------------------------------------------------------- schema 1 files and rewriting snapshots

SCHEMA1 = ROOT / "tests" / "data" / "run_schema1.h5"


def test_readers_open_a_schema_1_file():
    """tests/data/run_schema1.h5 was written by carabm before schema 2 (see tests/data/README.md)."""
    from carabm.io.report import read_series, summarize
    from carabm.viewer.scene import RunScene

    with h5py.File(SCHEMA1) as f:
        assert f.attrs["schema_version"] == 1 and "snapshots/000010/fields/IL6" in f
        il6_10 = f["snapshots/000010/fields/IL6"][()]
        ids_20 = f["snapshots/000020/agents/id"][()]
        serum = f["timeseries/serum/IL6"][()]
    check_run_file(SCHEMA1)
    ds = open_run(SCHEMA1)
    assert ds.sizes["time_h"] == 21 and ds["serum_IL6"].attrs["units"] == "pg/mL"  # as written then
    np.testing.assert_array_equal(ds["serum_IL6"].values, serum)
    snaps = Snapshots(SCHEMA1)
    assert len(snaps) == 3 and list(snaps.steps) == [0, 10, 20] and list(snaps.times_h) == [0.0, 1.0, 2.0]
    assert set(snaps[1]["fields"]) == {"IL6", "IFNg"} and snaps[1]["bbb_integrity"].shape == (4, 8, 16)
    np.testing.assert_array_equal(snaps[1]["fields"]["IL6"], il6_10)
    np.testing.assert_array_equal(snaps[-1]["agents"]["id"], ids_20)
    series = read_series(SCHEMA1)
    assert [e["drug"] for e in series.events] == ["tocilizumab", "dexamethasone"]
    assert summarize(series)["run"] == "run_schema1" and series.events[0]["dose_mg"] > 0
    scene = RunScene(SCHEMA1, "IL6")
    assert len(scene) == 3 and scene.frame(2).time_h == 2.0


def test_a_schema_1_file_is_not_appended_to(tmp_path):
    old = tmp_path / "old.h5"
    shutil.copy(SCHEMA1, old)
    before = old.read_bytes()
    with pytest.raises(InputFileError) as info:
        RunWriter(old, "r+")
    message = str(info.value)
    assert "schema 1" in message and "--out NEW.h5" in message and "\n" not in message
    assert old.read_bytes() == before


def _writer_with_lattice(path):
    from carabm.simulation import build_lattice

    writer = RunWriter(path)
    writer.write_header("x: 1\n", 1, "numpy", build_lattice(small_config()))
    return writer


def _snap(writer, step, value, n_agents):
    field = np.full((6, 12, 24), value, np.float32)
    agents = {"id": np.arange(n_agents) + 100 * step, "position": np.zeros((n_agents, 3), np.int32),
              "type": np.zeros(n_agents, np.uint8)}  # fmt: skip
    writer.write_snapshot(step, step / 10.0, {"IL6": field}, None, agents, voxel_um=20.0)


def test_snapshot_rows_grow_are_replaced_and_truncated(tmp_path):
    path = tmp_path / "w.h5"
    with _writer_with_lattice(path) as writer:
        for step, n in ((0, 3), (10, 5), (20, 2)):
            _snap(writer, step, step, n)
        assert [s["agents"]["id"].tolist() for s in Snapshots(path)] == [[0, 1, 2], list(range(1000, 1005)), [2000, 2001]]
        _snap(writer, 20, 7.0, 4)  # the same step again (a branch point): replaced, not duplicated
        snaps = Snapshots(path)
        assert list(snaps.steps) == [0, 10, 20] and float(snaps[2]["fields"]["IL6"].max()) == 7.0
        assert snaps[2]["agents"]["id"].tolist() == [2000, 2001, 2002, 2003]
        writer.truncate(rows=0, time_h=1.0)  # resume from the checkpoint at 1 h: drop the snapshot at 2 h
        _snap(writer, 30, 3.0, 1)
    with h5py.File(path) as f:
        assert f["snapshots/IL6"].shape[0] == 3 and f["snapshots/agents/id"].shape == (9,)
        assert f["snapshots/agents/count"][()].tolist() == [3, 5, 1]
    snaps = Snapshots(path)
    assert list(snaps.steps) == [0, 10, 30] and snaps[-1]["agents"]["id"].tolist() == [3000]
    assert [float(s["fields"]["IL6"].mean()) for s in snaps] == [0.0, 10.0, 3.0]


def test_a_file_killed_mid_snapshot_shows_only_complete_snapshots(tmp_path):
    """time_h grows last: arrays a row ahead of it (a kill mid-snapshot) are not read."""
    path = tmp_path / "w.h5"
    with _writer_with_lattice(path) as writer:
        _snap(writer, 0, 1.0, 3)
        _snap(writer, 10, 2.0, 3)
        writer.file["snapshots/time_h"].resize((1,))  # as if killed before the last snapshot's time was written
    snaps = Snapshots(path)
    assert len(snaps) == 1 and snaps[0]["agents"]["id"].tolist() == [0, 1, 2]
