"""Scene logic without drawing: compartment outlines, state colours, camera presets, legend, the view's c key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carabm.engine.lattice import default_layout
from carabm.viewer.scene import (
    CELL_COLORS,
    COMPARTMENT_COLORS,
    STATE_COLORS,
    RunScene,
    camera_view,
    compartment_boxes,
    state_colors,
)


def test_compartment_boxes_of_the_default_layout() -> None:
    labels = default_layout((6, 16, 30), voxel_um=20.0)
    boxes = compartment_boxes(labels)
    names = [name for name, _lo, _hi in boxes]
    assert sorted(set(names)) == ["bbb", "blood", "cns", "tissue"]
    assert names.count("blood") == 2  # the vessel through the tissue and the brain-vessel slab
    bbb = next((lo, hi) for name, lo, hi in boxes if name == "bbb")
    xs = np.flatnonzero((labels == 2).any(axis=(0, 1)))
    assert bbb[0].tolist() == [0, 0, xs[0]] and bbb[1].tolist() == [6, 16, xs[-1] + 1]
    assert compartment_boxes(None) == []


def test_state_colours_follow_the_hdf5_codes() -> None:
    from carabm.biology import cart  # noqa: PLC0415

    rgb = state_colors("cart", np.array([cart.RESTING, cart.ACTIVATED, cart.EXHAUSTED]))
    assert np.allclose(rgb, [STATE_COLORS["resting"], STATE_COLORS["activated"], STATE_COLORS["exhausted"]])
    assert np.allclose(state_colors("bcell", np.zeros(2, np.uint8)), [STATE_COLORS["resting"]] * 2)
    assert np.allclose(state_colors("macrophage", np.array([1])), [STATE_COLORS["activated"]])


def test_camera_presets() -> None:
    labels = default_layout((6, 16, 30), voxel_um=20.0)
    whole = camera_view("whole", labels.shape, labels)
    bbb = camera_view("bbb", labels.shape, labels)
    assert whole["x_range"] == (0.0, 30.0)
    x0, x1 = bbb["x_range"]
    xs = np.flatnonzero((labels == 2).any(axis=(0, 1)))
    assert x0 < xs[0] and xs[-1] + 1 < x1 and x1 - x0 < 30
    assert bbb["distance"] < whole["distance"] or bbb["center"] != whole["center"]
    assert camera_view("bbb", labels.shape, None) == camera_view("whole", labels.shape, None)  # no labels: whole
    with pytest.raises(ValueError, match="camera preset"):
        camera_view("side", labels.shape, labels)


def test_run_scene_colours_and_legend(tiny_run: Path) -> None:
    run = RunScene(tiny_run)
    frame = run.frame(len(run) - 1)
    assert set(frame.states) == set(CELL_COLORS)
    assert np.allclose(run.cell_colors(frame, "bcell", "type"), CELL_COLORS["bcell"])
    assert len(run.cell_colors(frame, "bcell", "state")) == len(frame.cells["bcell"])
    by_type, by_state = dict(run.legend_lines("type")), dict(run.legend_lines("state"))
    assert "cart" in by_type and "cart" not in by_state
    assert "activated cells" in by_state and "exhausted cells" in by_state
    for name in COMPARTMENT_COLORS:
        assert by_type[f"{name} outline"] == COMPARTMENT_COLORS[name] == by_state[f"{name} outline"]
    with pytest.raises(ValueError, match="color_by"):
        run.cell_colors(frame, "bcell", "age")


def test_colour_key_cycles() -> None:
    pytest.importorskip("vispy")
    from carabm.viewer.app import CAMERA_KEYS, next_color_by  # noqa: PLC0415

    assert next_color_by("type") == "state" and next_color_by("state") == "type"
    assert set(CAMERA_KEYS.values()) == {"whole", "bbb"}
