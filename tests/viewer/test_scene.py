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


def test_bbb_colour_scale_spans_the_runs_range() -> None:
    from carabm.viewer.scene import BBB_BREACHED, BBB_INTACT, bbb_color  # noqa: PLC0415

    # a fall to 0.65 is the breached red on a scale that starts at the run's lowest integrity
    assert np.allclose(bbb_color(np.array([0.65, 1.0]), low=0.65), [BBB_BREACHED, BBB_INTACT])
    mid = bbb_color(np.array([0.825]), low=0.65)[0]
    assert np.allclose(mid, (np.asarray(BBB_INTACT) + BBB_BREACHED) / 2, atol=1e-6)
    assert np.allclose(bbb_color(np.array([0.2, 1.4]), low=0.65), [BBB_BREACHED, BBB_INTACT])  # clipped


def test_breach_from_a_series() -> None:
    from carabm.viewer.scene import Breach  # noqa: PLC0415

    t = np.arange(0.0, 200.0, 6.0)
    integrity = np.where(t < 100, 1.0, 0.64)  # below 0.9 from t = 102 h
    integrity[t >= 150] = 0.95  # recovered at 150 h
    breach = Breach.from_series(t, integrity)
    assert (breach.start_h, breach.end_h, breach.lowest, breach.lowest_h) == (102.0, 150.0, 0.64, 102.0)
    assert breach.covers(120.0) and not breach.covers(96.0) and not breach.covers(150.0)
    assert breach.text() == "BBB breach: integrity down to 0.64 on day 4.2 (mean < 0.9 from day 4.2 to 6.2)"
    never = Breach.from_series(t, np.full(t.size, 0.95))
    assert not never.happened and not never.covers(120.0) and "no BBB breach" in never.text()
    ongoing = Breach.from_series(t, np.linspace(1.0, 0.5, t.size))
    assert ongoing.end_h is None and ongoing.covers(t[-1]) and ongoing.lowest_h == t[-1]


def test_scene_of_a_breached_run_marks_the_breach_and_the_cells_in_the_cns(breached_run: Path) -> None:
    from carabm.io.catalog import cell_names  # noqa: PLC0415
    from carabm.viewer.scene import BBB_BREACHED, BBB_INTACT  # noqa: PLC0415

    run = RunScene(breached_run)
    assert run.bbb_low == pytest.approx(0.65, abs=1e-6)
    first, last = run.frame(0), run.frame(len(run) - 1)
    assert np.allclose(run.bbb_colors(first), BBB_INTACT) and np.allclose(run.bbb_colors(last), BBB_BREACHED, atol=1e-5)
    assert run.breached_snapshots().tolist() == [False, True, True]  # mean < 0.9 from 6 h * 0.1 / 0.35 = 1.7 h
    assert "BREACHED" in last.overlay and "BREACHED" not in first.overlay
    assert "BBB breach: integrity down to 0.65 on day 0.2" in last.overlay
    labels = run.compartment
    for name in cell_names():  # crossed = in the CNS, never microglia (they live there)
        positions = last.cells[name]
        in_cns = labels[positions[:, 0], positions[:, 1], positions[:, 2]] == 3 if len(positions) else np.zeros(0, bool)
        assert last.crossed[name].tolist() == (in_cns & (name != "microglia")).tolist()
    assert last.crossed["macrophage"].sum() >= 1 and not first.crossed["macrophage"].any()
    assert len(last.crossed_positions()) == sum(int(m.sum()) for m in last.crossed.values())
    assert f"{sum(int(m.sum()) for m in last.crossed.values())} cells crossed into CNS" in last.overlay


def test_an_intact_run_keeps_blue_and_says_no_breach(tiny_run: Path) -> None:
    from carabm.viewer.scene import BBB_INTACT, BREACH_INTEGRITY  # noqa: PLC0415

    run = RunScene(tiny_run)
    assert run.bbb_low == BREACH_INTEGRITY  # a run that barely moves is not painted red by its noise
    last = run.frame(len(run) - 1)
    assert np.abs(run.bbb_colors(last) - BBB_INTACT).max() < 0.02
    assert "no BBB breach" in last.overlay and not run.breached_snapshots().any()


def test_slider_is_red_over_the_breach() -> None:
    pytest.importorskip("vispy")
    from carabm.viewer.app import SLIDER_BREACH, SLIDER_GREY, slider_style  # noqa: PLC0415

    style = slider_style(np.array([False, False, False, True, True, False]))
    assert f"stop:0.5000 {SLIDER_GREY}, stop:0.5001 {SLIDER_BREACH}, stop:0.9000 {SLIDER_BREACH}, stop:0.9001 {SLIDER_GREY}" in style
    assert SLIDER_BREACH not in slider_style(np.zeros(4, bool))
    assert slider_style(np.array([False, True])).count("stop:1.0000") == 1  # red to the end
