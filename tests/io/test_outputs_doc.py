"""docs/outputs.md's layout table matches a real run file: every path, attribute and unit, both directions."""

import re
from pathlib import Path

import h5py
import pytest

import carabm
from carabm.engine.lattice import COMPARTMENTS
from carabm.io.catalog import cell_names, cytokine_names, drug_names
from carabm.io.config import load_config
from carabm.io.hdf5 import SCALE_ATTRS

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "outputs.md"
TINY = ["lattice.shape=[4, 8, 16]", "run.duration_h=1", "run.snapshot_every_h=1", "run.checkpoint_every_h=1",
        "cells.bcell.initial_count=20", "cells.macrophage.initial_count=4", "cells.monocyte.initial_count=2",
        "cells.microglia.initial_count=3", "run.backend=numpy",
        "therapies=[{drug: tocilizumab, start_h: 0.2}, {drug: dexamethasone, start_h: 0.5}]"]  # fmt: skip
#: names that stand for a family in the table: path parts, and attribute names after a prefix
PLACEHOLDERS = [(cytokine_names(), "<cytokine>"), (cell_names(), "<celltype>"), (drug_names(), "<drug>")]
ATTR_PLACEHOLDERS = {"code": "<celltype>", "codes": "<celltype>", "label": "<compartment>"}


def _generic(name: str) -> str:
    """``serum/IL6`` -> ``serum/<cytokine>``."""
    parts = []
    for part in name.split("/"):
        for names, placeholder in PLACEHOLDERS:
            if part in names:
                part = placeholder
                break
        parts.append(part)
    return "/".join(parts)


def _generic_attr(name: str) -> str:
    """``code_cart`` -> ``code_<celltype>``, ``label_cns`` -> ``label_<compartment>``."""
    prefix, _, rest = name.partition("_")
    known = {"code": cell_names(), "codes": cell_names(), "label": tuple(COMPARTMENTS)}
    return f"{prefix}_{ATTR_PLACEHOLDERS[prefix]}" if rest in known.get(prefix, ()) else name


def _documented() -> dict[str, tuple[str, set[str], set[str]]]:
    """Rows of the layout table: path -> (units, required attributes, optional attributes)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(/[^`]*)`[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|$", line)
        if match:
            path, _, units, attrs = match.groups()
            names = re.findall(r"`([^`]+)`(\*?)", attrs)
            units_text = re.findall(r"`([^`]+)`", units)
            rows[path] = (units_text[0] if units_text else "", {n for n, star in names if not star}, {n for n, star in names if star})
    return rows


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("doc") / "run.h5"
    carabm.run(load_config(ROOT / "configs" / "quickstart.yaml", TINY), out=out)
    return out


def _in_file(path: Path) -> dict[str, tuple[str, set[str]]]:
    """Generic path -> (units, attribute names) over every group and dataset of the file."""
    found: dict[str, tuple[str, set[str]]] = {}

    def add(name, obj):
        attrs = {_generic_attr(k) for k in obj.attrs if k not in SCALE_ATTRS}
        units = obj.attrs.get("units", "")
        units = units.decode() if isinstance(units, bytes) else str(units)
        key = "/" + _generic(name) if name else "/"
        old_units, old_attrs = found.get(key, (units, set()))
        assert old_units == units, f"{name}: units {units!r}, others of {key} have {old_units!r}"
        found[key] = (units, old_attrs | attrs)

    with h5py.File(path) as f:
        add("", f)
        f.visititems(add)
    return found


def test_every_path_of_a_run_file_is_documented_and_every_documented_path_is_written(run_file):
    documented, found = _documented(), _in_file(run_file)
    assert len(documented) > 40  # the table was parsed
    assert sorted(set(found) - set(documented)) == [], "in the file, not in docs/outputs.md"
    assert sorted(set(documented) - set(found)) == [], "in docs/outputs.md, not in the file"


def test_attributes_and_units_match_the_table(run_file):
    documented, found = _documented(), _in_file(run_file)
    problems = []
    for path, (units, attrs) in found.items():
        doc_units, required, optional = documented[path]
        if units != doc_units:
            problems.append(f"{path}: units {units!r} in the file, {doc_units!r} in the docs")
        if attrs - required - optional:
            problems.append(f"{path}: attributes {sorted(attrs - required - optional)} not documented")
        if required - attrs:
            problems.append(f"{path}: documented attributes {sorted(required - attrs)} not in the file")
    assert problems == []


def test_the_table_names_the_current_schema():
    assert f"## Layout of `RUN.h5` (schema {carabm.SCHEMA_VERSION})" in DOC.read_text()
