"""Config parsing: defaults, overrides, and one clear line per bad input."""

from pathlib import Path

import numpy as np
import pytest

from carabm.errors import ConfigError
from carabm.io.catalog import cell_names, cytokine_names, drug_names
from carabm.io.config import Config, initial_agents, load_config, validate_config

# run configs; sweep and calibration files (sweep_*.yaml, cohort_*.yaml, calibration_*.yaml) are checked in tests/hpc
CONFIGS = sorted(p for p in (Path(__file__).parents[2] / "configs").glob("*.yaml")
                 if not p.name.startswith(("sweep_", "cohort_", "calibration_")))  # fmt: skip

#: cell counts that fit a small lattice (the defaults fill a [16, 32, 48] one)
FEW_CELLS = ["cells.bcell.initial_count=50", "cells.macrophage.initial_count=10", "cells.monocyte.initial_count=2",
             "cells.microglia.initial_count=5"]


def problems(data):
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return info.value.problems


def test_defaults_are_complete():
    config = load_config(None)
    assert isinstance(config, Config)
    assert config.run.n_steps == 336 * 10
    assert set(type(config.cytokines).model_fields) == set(cytokine_names())
    assert set(type(config.cells).model_fields) == set(cell_names())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    load_config(path)


def test_resolved_yaml_round_trips():
    from carabm.io.config import config_from_text

    config = load_config(None, ["run.seed=9", "cells.cart.dose=2e8"])
    assert config_from_text(config.to_yaml()) == config


def test_set_overrides_parse_as_yaml():
    config = load_config(None, ["run.seed=7", "lattice.shape=[4, 8, 20]", "therapies=[{drug: anakinra, start_h: 0}]", *FEW_CELLS])
    assert config.run.seed == 7
    assert config.lattice.shape == (4, 8, 20)
    assert config.therapies[0].drug == "anakinra"


def test_scientific_notation_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cells:\n  cart: {dose: 1e8}\n")
    assert load_config(path).cells.cart.dose == 1e8


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"cells": {"cart": {"dose": -5}}}, "cells.cart.dose: must be >= 0, got -5"),
        ({"rnu": {}}, "rnu: unknown key 'rnu'; did you mean 'run'?"),
        ({"cells": {"macrophages": {}}}, "cells.macrophages: unknown cell type 'macrophages'; did you mean 'macrophage'?"),
        ({"cytokines": {"IL-6": {}}}, "cytokines.IL-6: unknown cytokine 'IL-6'; did you mean 'IL6'?"),
        ({"cytokines": {"IL6": {"half_life_h": -1}}}, "cytokines.IL6.half_life_h: must be > 0, got -1"),
        ({"run": {"dt_min": "abc"}}, "run.dt_min: must be a number, got 'abc'"),
        ({"run": {"seed": True}}, "run.seed: must be an integer, got true"),
        ({"run": {"backend": "gpu"}}, "run.backend: must be one of 'auto', 'numpy' or 'cupy', got 'gpu'"),
        ({"therapies": [{"drug": "tocilizumabb", "start_h": 1}]}, "therapies[0].drug: unknown drug 'tocilizumabb'; did you mean 'tocilizumab'?"),
        ({"therapies": [{"drug": "anakinra"}]}, "therapies[0]: give exactly one of start_h or when"),
        ({"therapies": [{"drug": "anakinra", "when": "crs_grade >> 2"}]}, "therapies[0].when: malformed trigger"),
        ({"therapies": [{"drug": "anakinra", "when": "fever > 2"}]}, "unknown quantity 'fever'"),
        ({"lattice": {"shape": [1, 2]}}, "lattice.shape: too few entries"),
        ({"lattice": {"shape": [0, 8, 8]}}, "lattice.shape: every entry must be >= 1"),
        ({"lattice": {"layout": {"kind": "mask"}}}, "lattice.layout.file: required when kind is 'mask'"),
        ({"lattice": {"layout": {"vessel_spacing_um": 50}}}, "lattice.layout.vessel_spacing_um: 50 um makes vessels of radius 30 um touch"),
        ({"lattice": {"layout": {"cells_cross_brain_seam": "maybe"}}}, "lattice.layout.cells_cross_brain_seam: must be true or false"),
        ({"lattice": {"shape": [5000, 5000, 5000]}}, "lattice.shape: [5000, 5000, 5000] needs about"),
        ({"output": {"snapshot_fields": ["IL7"]}}, "output.snapshot_fields[0]: unknown cytokine 'IL7'"),
    ],
)
def test_bad_input_gives_one_line_with_key_path(data, expected):
    found = problems(data)
    assert len(found) == 1, found
    assert expected in found[0]
    assert "\n" not in found[0]


def test_all_problems_reported_at_once():
    found = problems({"cells": {"cart": {"dose": -1}, "bcell": {"initial_count": 1.5}}, "run": {"dt_min": 0}})
    assert len(found) == 3


def test_unknown_set_key_and_bad_value():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["run.sed=3", "run.seed=abc", "novalue"])
    text = "\n".join(info.value.problems)
    assert "--set 'novalue': expected KEY=VALUE" in text
    with pytest.raises(ConfigError) as info:
        load_config(None, ["run.sed=3", "run.seed=abc"])
    assert any(p.startswith("run.sed: unknown key 'sed'; did you mean 'seed'?") for p in info.value.problems)
    assert "run.seed: must be an integer, got 'abc'" in info.value.problems


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  dt_min: 6\n  seed: [1,\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+, column \d+"):
        load_config(bad)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_mask_layout_from_file(tmp_path):
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[:, :, 6:] = 3
    labels[:, :, 5] = 2
    labels[:, :, 4] = 1
    np.save(tmp_path / "mask.npy", labels)
    (tmp_path / "run.yaml").write_text("lattice:\n  shape: [4, 6, 8]\n  layout: {kind: mask, file: mask.npy}\n"
                                       "cells: {bcell: {initial_count: 20}, macrophage: {initial_count: 5}, monocyte: {initial_count: 2}, "
                                       "microglia: {initial_count: 5}}\n")
    config = load_config(tmp_path / "run.yaml")
    from carabm.simulation import build_lattice

    assert np.array_equal(build_lattice(config).labels, labels)


def test_every_drug_name_accepted():
    config = validate_config({"therapies": [{"drug": d, "start_h": 0} for d in drug_names()]})
    assert [t.drug for t in config.therapies] == list(drug_names())


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("run.duration_h=.inf", "run.duration_h: must be a finite number, got .inf"),
        ("run.dt_min=.nan", "run.dt_min: must be a finite number, got .nan"),
        ("cells.cart.dose=1e400", "cells.cart.dose: must be a finite number"),
        ("patient.weight_kg=-.inf", "patient.weight_kg: must be a finite number"),
        ("therapies=[{drug: anakinra, start_h: .nan}]", "therapies[0].start_h: must be a finite number"),
        ("cytokines.IL6.diffusion_um2_s=.inf", "cytokines.IL6.diffusion_um2_s: must be a finite number"),
        ("run.duration_h=1e300", "run.duration_h: 1e+300 h in steps of run.dt_min=6 min"),
        ("patient.tumor_burden_cells=1e-300", "cells.cart.dose: gives inf cells in the model's blood pool"),
        ("cells.cart.dose=1e300", "cells.cart.dose: gives 2e+293 cells in the model's blood pool"),
    ],
)
def test_non_finite_and_overflowing_numbers_are_rejected(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert any(expected in line for line in caught.value.problems), caught.value.problems


def test_run_checks_made_at_validation_all_at_once():
    """What a run refuses before its first step, validation refuses too, every problem in one pass."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["lattice.shape=[2, 4, 24]", "run.duration_h=1e300", "therapies=[{drug: anakinra, when: 'crs_grade >= 2 or'}]"])
    found = caught.value.problems
    assert any(line.startswith("cells.bcell.initial_count + cells.macrophage.per_tumour_cell") and "do not fit in the" in line
               for line in found), found  # fmt: skip
    assert any(line.startswith("cells.microglia.initial_count: 150 cells do not fit in the") for line in found), found
    assert any(line.startswith("run.duration_h:") for line in found), found
    assert any(line.startswith("therapies[0].when:") for line in found), found
    with pytest.raises(ConfigError, match="nx = 1 is too small for the default layout"):
        load_config(None, ["lattice.shape=[6, 12, 1]"])


def test_mask_of_the_wrong_shape_is_found_at_validation(tmp_path):
    np.save(tmp_path / "mask.npy", np.zeros((4, 6, 9), np.uint8))
    (tmp_path / "run.yaml").write_text("lattice:\n  shape: [4, 6, 8]\n  layout: {kind: mask, file: mask.npy}\n")
    with pytest.raises(ConfigError, match=r"lattice.layout.file: mask shape \[4, 6, 9\] differs from lattice.shape \[4, 6, 8\]"):
        load_config(tmp_path / "run.yaml")


def test_macrophages_and_monocytes_follow_the_tumour_sample():
    for tumour in (750, 1500, 2250):
        cells = load_config(Path(__file__).parents[2] / "configs" / "quickstart.yaml", [f"cells.bcell.initial_count={tumour}"]).cells
        assert initial_agents(cells, "macrophage") == round(0.2 * tumour) and initial_agents(cells, "monocyte") == round(0.02 * tumour)
        assert initial_agents(cells, "microglia") == 100  # a density of the CNS, which the tumour sample does not change


def test_initial_count_alone_keeps_its_old_fixed_meaning():
    cells = load_config(None, ["cells.bcell.initial_count=1000", "cells.macrophage.initial_count=77"]).cells
    assert cells.macrophage.per_tumour_cell is None and initial_agents(cells, "macrophage") == 77
    assert initial_agents(cells, "monocyte") == 20  # still per tumour cell (0.02): its section names neither key
    both = load_config(None, ["cells.macrophage.initial_count=77", "cells.macrophage.per_tumour_cell=0.5"]).cells
    assert initial_agents(both, "macrophage") == round(0.5 * both.bcell.initial_count)  # the new key wins when both are set


@pytest.mark.parametrize(("key", "why"), [("cells.bcell.per_tumour_cell=0.1", "the tumour itself is set by initial_count"),
                                          ("cells.cart.per_tumour_cell=0.1", "cart is not placed on the lattice")])  # fmt: skip
def test_per_tumour_cell_where_it_means_nothing_is_one_clear_line(key, why):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [key])
    assert any(line.startswith(key.split("=")[0] + ": ") and why in line for line in caught.value.problems), caught.value.problems
