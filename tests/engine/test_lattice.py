"""Lattice geometry: the default layout's compartments and the helpers."""

import numpy as np
import pytest

from carabm.engine.lattice import BBB, BLOOD, CNS, TISSUE, Lattice, default_layout
from carabm.errors import ConfigError
from carabm.io.masks import load_mask


@pytest.fixture
def lattice():
    return Lattice(default_layout((6, 20, 40), 20.0, tissue_fraction=0.5, vessel_radius_um=60, brain_vessel_width_um=40, bbb_thickness_um=20), 20.0)


def test_layout_order_along_x(lattice):
    row = lattice.labels[0, 0]  # y = 0 is far from the tissue vessel
    assert list(row[:20]) == [TISSUE] * 20
    assert list(row[20:22]) == [BLOOD, BLOOD]
    assert row[22] == BBB
    assert np.all(row[23:] == CNS)


def test_tissue_vessel_is_a_tube_along_z(lattice):
    tube = lattice.labels[:, :, :20] == BLOOD
    assert np.all(tube == tube[0])  # same cross-section on every z
    # area of a disc of radius 3 voxels: pi r^2 ~ 28 voxels (digitised within 20 %)
    assert abs(int(tube[0].sum()) - np.pi * 9) < 0.2 * np.pi * 9


def test_vessel_grid_keeps_the_vessel_density_of_a_larger_block():
    one = default_layout((4, 24, 40), 20.0, tissue_fraction=0.6, vessel_radius_um=30)
    # a spacing equal to the tissue block's extent (24 voxels of 20 um) is the single central vessel
    assert np.array_equal(default_layout((4, 24, 40), 20.0, tissue_fraction=0.6, vessel_radius_um=30, vessel_spacing_um=480), one)
    big = default_layout((4, 48, 60), 20.0, tissue_fraction=0.8, vessel_radius_um=30, vessel_spacing_um=480)
    block, cross = big[0, :, :48], one[0, :, :24]
    for y0 in (0, 24):  # a 2 x 2 grid: each quarter of the block is the small block's cross-section
        for x0 in (0, 24):
            assert np.array_equal(block[y0 : y0 + 24, x0 : x0 + 24] == BLOOD, cross == BLOOD)
    assert (block == BLOOD).mean() == (cross == BLOOD).mean()
    # 1.4 spacings per axis round to one vessel, centred
    odd = default_layout((4, 34, 40), 20.0, tissue_fraction=0.6, vessel_radius_um=30, vessel_spacing_um=480)
    ys, xs = np.nonzero(odd[0, :, :24] == BLOOD)
    assert (ys.min() + ys.max()) / 2 == 16.5 and (xs.min() + xs.max()) / 2 == 11.5


def test_cns_touches_blood_only_through_bbb(lattice):
    assert len(lattice.faces_between("cns", "blood")[0]) == 0
    assert len(lattice.faces_between("cns", "tissue")[0]) == 0
    a, b, axis = lattice.faces_between("bbb", "cns")
    assert len(a) == 6 * 20 and np.all(axis == 2)
    assert np.all(lattice.labels.ravel()[a] == BBB) and np.all(lattice.labels.ravel()[b] == CNS)


def test_counts_and_volume(lattice):
    counts = lattice.counts()
    assert sum(counts.values()) == lattice.n_voxels == 6 * 20 * 40
    assert lattice.voxel_volume_ml == pytest.approx(8e-9)


def test_neighbour_labels_mark_outside(lattice):
    nb = lattice.neighbour_labels(6)
    assert nb.shape == (6, 6, 20, 40)
    assert np.all(nb[0, 0] == 255)  # -z neighbour of z = 0 is outside


def test_too_small_lattice_is_an_error():
    with pytest.raises(ValueError, match="too small for the default layout"):
        default_layout((4, 4, 5), 20.0)


def test_mask_round_trip(tmp_path, lattice):
    np.save(tmp_path / "mask.npy", lattice.labels)
    assert np.array_equal(load_mask(tmp_path / "mask.npy"), lattice.labels)
    with pytest.raises(ConfigError, match="no such file"):
        load_mask(tmp_path / "nope.npy")


def test_unknown_label_rejected():
    with pytest.raises(ValueError, match="unknown compartment"):
        Lattice(np.full((2, 2, 2), 9, np.uint8), 10.0)
