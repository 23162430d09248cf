"""Pydantic validation errors as one readable line each: the key path, what is wrong and what is allowed."""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-") or part in {"tuple", "list"}:
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _allowed_names(root: type[BaseModel], parent: tuple[Any, ...]) -> list[str]:
    model = _model_at(root, parent)
    return list(model.model_fields) if model else []


def describe(value: Any) -> str:
    """A config value as the user wrote it: a quoted string, or compact YAML."""
    if isinstance(value, str):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _message(root: type[BaseModel], err: dict[str, Any]) -> str:
    kind, loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    path = _path(loc)
    if kind == "extra_forbidden":
        parent, name = loc[:-1], str(loc[-1])
        allowed = _allowed_names(root, parent)
        where = _path(parent)
        what = {"cells": "cell type", "cytokines": "cytokine"}.get(where, "key")
        hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        text = f"{path}: unknown {what} {name!r}"
        if hint:
            text += f"; did you mean {hint[0]!r}?"
        return text + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        return f"{path}: must be one of {expected}, got {describe(value)}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{path}: must be {bounds[kind]} {limit:g}, got {describe(value)}"
    types = {
        "float_type": "a number", "int_type": "an integer", "bool_type": "true or false",
        "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
        "model_type": "a mapping of keys", "dict_type": "a mapping of keys", "model_attributes_type": "a mapping of keys",
    }  # fmt: skip
    if kind in types:
        return f"{path}: must be {types[kind]}, got {describe(value)}"
    if kind == "finite_number":
        return f"{path}: must be a finite number, got {describe(value)}"
    if kind == "missing" and loc and isinstance(loc[-1], int):
        return f"{_path(loc[:-1])}: too few entries (expected [nz, ny, nx])"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "too_short" or kind == "too_long":
        return f"{path}: wrong length, got {describe(value)} ({err['msg']})"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        if ":" in msg.split(" ")[0]:  # "file: required ..." -> nested key
            sub, rest = msg.split(":", 1)
            return f"{path}.{sub}:{rest}" if path else f"{sub}:{rest}"
        return f"{path}: {msg}" if path else msg
    return f"{path}: {err['msg']}, got {describe(value)}"


def problems_from(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """One readable line per pydantic error of a ``root`` model, with its key path and what is allowed."""
    lines: list[str] = []
    for err in error.errors():
        line = _message(root, err)
        if line not in lines:
            lines.append(line)
    return lines
