"""Write docs/parameters.md and configs/default.yaml from the config schema.

docs/parameters.md: every config key with its default, unit/source text and meaning.
configs/default.yaml: the default high-risk patient with every key written out and commented
with its unit and source. Both come from the pydantic schema in carabm/io/config.py, so they
cannot drift from the code: ``python scripts/make_parameter_table.py`` (a test checks both
files are current).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import carabm.biology  # noqa: F401  (registers the built-in model, whose sections the table lists)
from carabm.io.config import CytokineMap, schema

ROOT = Path(__file__).parents[1]
OUT = ROOT / "docs" / "parameters.md"
DEFAULT_YAML = ROOT / "configs" / "default.yaml"
#: what the default run changes from the schema's defaults: 8x the quickstart's lattice and cells,
#: grown along the vessel (z) so that every cross-section has the quickstart's geometry (the
#: distance from tissue to vessel sets how much cytokine reaches the blood)
DEFAULT_OVERRIDES = {
    "lattice": {"shape": [96, 24, 40]},
    "cells": {"bcell": {"initial_count": 12000}, "microglia": {"initial_count": 800}},  # macrophages, monocytes: per tumour cell
}  # fmt: skip


def _default_text(value: Any) -> str:
    if isinstance(value, CytokineMap):
        return ", ".join(f"{k}: {v:g}" for k, v in value.as_dict().items())
    if isinstance(value, tuple):
        return str(list(value))
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def rows(model: type[BaseModel], instance: BaseModel, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, description) for every leaf of a section."""
    out: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        value = getattr(instance, name)
        path = f"{prefix}{name}"
        is_map = isinstance(value, CytokineMap)
        if isinstance(value, BaseModel) and not is_map:
            out += rows(type(value), value, path + ".")
        else:
            out.append((path, _default_text(value), (field.description or "").replace("|", "/")))
    return out


def render() -> str:
    """The Markdown text of the table."""
    lines = [
        "# Parameters",
        "",
        "Generated from the config schema (`carabm/io/config.py` and the sections of the biology modules) by",
        "`python scripts/make_parameter_table.py`; do not edit by hand.",
        "Units are in brackets; \"assumed\" marks a value without a checked source, with the reasoning.",
        "Cytokine maps (e.g. `secretion_pg_cell_h`) list their non-zero defaults; unnamed cytokines are 0.",
        "",
        "| key | default | unit, source and meaning |",
        "|---|---|---|",
    ]
    model = schema()
    lines += [f"| `{path}` | {default} | {text} |" for path, default, text in rows(model, model()) if path not in ("therapies", "plugins")]
    lines += ["", "`therapies`: a list of `{drug, start_h | when, dose_mg_kg | dose_mg, every_h, max_doses, min_interval_h}`;",
              "see the drug table in `carabm/biology/drugs.py` for doses, half-lives and sources.",
              "`plugins`: modules or `.py` files that add cell types, cytokines, drugs or rule layers (docs/extending.md).", ""]  # fmt: skip
    return "\n".join(lines)


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}" if ("e" in f"{value:g}" and "." in f"{value:g}") or "e" not in f"{value:g}" else f"{value:.1e}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _yaml_lines(model: BaseModel, indent: int) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        note = (field.description or "").replace("\n", " ")
        if isinstance(value, CytokineMap):
            entries = ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.as_dict().items())
            lines.append(f"{pad}{name}: {{{entries}}}  # {note}")
        elif isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:" + (f"  # {note}" if note else ""))
            lines += _yaml_lines(value, indent + 1)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            lines.append(f"{pad}{name}: []")
        else:
            lines.append(f"{pad}{name}: {_yaml_value(value)}" + (f"  # {note}" if note else ""))
    return lines


def render_default_yaml() -> str:
    """configs/default.yaml: every key of the default run, commented with unit and source."""
    from carabm.io.config import validate_config  # noqa: PLC0415

    config = validate_config(DEFAULT_OVERRIDES, check_memory=False)
    head = [
        "# carabm default run: the high-risk axi-cel-like patient of VALIDATION.md, 14 days.",
        "# Generated by scripts/make_parameter_table.py from the schema (carabm/io/config.py); every key is",
        "# written out with its unit and source, or 'assumed' with the reasoning. configs/quickstart.yaml is",
        "# its small twin (a smaller lattice and tumour; the same biology).",
        "",
    ]
    body: list[str] = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            body.append(f"{name}:")
            body += _yaml_lines(value, 1)
        elif name == "plugins":
            body.append(f"{name}: []  # modules or .py files adding cell types, cytokines, drugs (docs/extending.md)")
        else:
            body.append(f"{name}: []  # a list of drugs, e.g. {{drug: tocilizumab, when: 'crs_grade >= 2', max_doses: 4}}")
    return "\n".join(head + body) + "\n"


if __name__ == "__main__":
    outputs = {OUT: render(), DEFAULT_YAML: render_default_yaml()}
    if "--check" in sys.argv:
        sys.exit(0 if all(p.exists() and p.read_text() == t for p, t in outputs.items()) else 1)
    for path, text in outputs.items():
        path.write_text(text)
        print(f"wrote {path}")
