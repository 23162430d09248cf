"""XDMF sidecar: VTK's XDMF reader (as in ParaView) sees the grid, its arrays, the cells and every time step."""

from pathlib import Path

import numpy as np
import pytest

import carabm
from carabm.io.catalog import cytokine_names
from carabm.io.config import load_config
from carabm.io.runfile import Snapshots
from carabm.io.xdmf import write_xdmf, xdmf_path

vtk = pytest.importorskip("vtk")
from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline  # noqa: E402

ROOT = Path(__file__).parents[2]
SMALL = ["lattice.shape=[6, 12, 24]", "run.duration_h=4", "run.snapshot_every_h=2", "cells.bcell.initial_count=50",
         "cells.macrophage.initial_count=10", "cells.monocyte.initial_count=2", "cells.microglia.initial_count=5",
         "run.backend=numpy"]  # fmt: skip


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("xdmf") / "run.h5"
    carabm.run(load_config(ROOT / "configs" / "quickstart.yaml", SMALL), out=out)
    return out


def read(xmf, time_h):
    reader = vtk.vtkXdmfReader()
    reader.SetFileName(str(xmf))
    reader.UpdateInformation()
    times = reader.GetOutputInformation(0).Get(vtkStreamingDemandDrivenPipeline.TIME_STEPS())
    reader.UpdateTimeStep(time_h)
    output = reader.GetOutputDataObject(0)
    blocks = {output.GetMetaData(i).Get(vtk.vtkCompositeDataSet.NAME()): output.GetBlock(i) for i in range(output.GetNumberOfBlocks())}
    return list(times), blocks


def test_sidecar_written_next_to_the_output_atomically(run_file):
    xmf = xdmf_path(run_file)
    assert xmf == run_file.with_suffix(".xmf") and xmf.exists()
    assert not xmf.with_name(xmf.name + ".tmp").exists()
    assert f">{run_file.name}:/snapshots/" in xmf.read_text()  # relative: the pair can be moved together


def test_vtk_reads_fields_cells_and_time_steps(run_file):
    times, blocks = read(xdmf_path(run_file), 2.0)
    assert times == [0.0, 2.0, 4.0]
    assert set(blocks) == {"fields", "cells"}
    grid = blocks["fields"]
    assert grid.GetDimensions() == (25, 13, 7)  # nodes, x y z: cell-centred voxels
    assert grid.GetSpacing() == (20.0, 20.0, 20.0)
    names = {grid.GetCellData().GetArrayName(i) for i in range(grid.GetCellData().GetNumberOfArrays())}
    assert names == set(cytokine_names()) | {"bbb_integrity", "compartment"}
    snap = Snapshots(run_file)[1]
    assert snap["step"] == 20
    il6, agents = snap["fields"]["IL6"], snap["agents"]
    # VTK's cell order (x fastest) is the C order of our [z, y, x] arrays
    np.testing.assert_array_equal(vtk_to_numpy(grid.GetCellData().GetArray("IL6")), il6.ravel())
    cells = blocks["cells"]
    assert cells.GetNumberOfPoints() == agents["id"].size
    np.testing.assert_array_equal(vtk_to_numpy(cells.GetPointData().GetArray("id")), agents["id"])
    np.testing.assert_array_equal(vtk_to_numpy(cells.GetPointData().GetArray("type")), agents["type"])
    points = vtk_to_numpy(cells.GetPoints().GetData())
    np.testing.assert_allclose(points, (agents["position"][:, ::-1] + 0.5) * 20.0)
    bounds = grid.GetBounds()
    assert points[:, 0].max() < bounds[1] and points[:, 2].max() < bounds[5]


def test_write_xdmf_elsewhere_uses_a_relative_path(run_file, tmp_path):
    xmf = write_xdmf(run_file, tmp_path / "view.xmf")
    times, blocks = read(xmf, 4.0)
    assert times == [0.0, 2.0, 4.0] and blocks["fields"].GetNumberOfCells() == 6 * 12 * 24


def test_vtk_reads_a_schema_1_file(tmp_path):
    """Old files (one HDF5 group per snapshot) still get a sidecar ParaView reads."""
    old = tmp_path / "old.h5"
    old.write_bytes((ROOT / "tests" / "data" / "run_schema1.h5").read_bytes())
    xmf = write_xdmf(old)
    times, blocks = read(xmf, 1.0)
    assert times == [0.0, 1.0, 2.0] and set(blocks) == {"fields", "cells"}
    snap = Snapshots(old)[1]
    grid = blocks["fields"]
    np.testing.assert_array_equal(vtk_to_numpy(grid.GetCellData().GetArray("IFNg")), snap["fields"]["IFNg"].ravel())
    np.testing.assert_array_equal(vtk_to_numpy(blocks["cells"].GetPointData().GetArray("id")), snap["agents"]["id"])
