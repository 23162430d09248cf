"""Clinical triggers for therapies: a small, safe expression grammar (no ``eval``).

Grammar::

    trigger    := clause (("and" | "or") clause)*      # "and" binds tighter than "or"
    clause     := quantity OP number
    quantity   := crs_grade | icans_grade | time_h | tumor_burden
                | serum.<CYTOKINE> | cns.<CYTOKINE>     # pg/mL
    OP         := >= | > | <= | < | == | !=

Examples: ``crs_grade >= 2``, ``serum.IL6 > 500 and time_h >= 24``. Thresholds are finite
numbers (``nan`` and ``inf`` are refused). A parsed trigger is evaluated by the shared safe
evaluator :mod:`carabm.io.expressions` (as sweep ``derived:`` expressions are); a readout
that is NaN stops the run with an error instead of silently comparing false.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carabm.errors import CarabmError
from carabm.io import expressions
from carabm.io.catalog import CATALOG, register_check

SCALARS = ("crs_grade", "icans_grade", "time_h", "tumor_burden")


def quantities() -> tuple[str, ...]:
    """Every quantity a trigger may name (the cytokines are the catalog's, plug-ins' included)."""
    return SCALARS + tuple(f"{where}.{c}" for where in ("serum", "cns") for c in CATALOG.cytokines)


_OPS = (">=", ">", "<=", "<", "==", "!=")
_TOKEN = re.compile(r"\s*(?:(>=|<=|==|!=|>|<)|([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)|([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))")


class TriggerSyntaxError(ValueError):
    """A trigger expression that does not follow the grammar."""


@dataclass(frozen=True)
class Clause:
    """``quantity OP threshold``."""

    quantity: str
    op: str
    threshold: float

    def holds(self, values: Mapping[str, float]) -> bool:
        """Evaluate against current readouts."""
        return Trigger(self.quantity, ((self,),)).holds(values)


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger: OR of AND-groups of clauses."""

    text: str
    any_of: tuple[tuple[Clause, ...], ...]
    tree: ast.Expression | None = field(default=None, compare=False, repr=False)

    @property
    def expression(self) -> str:
        """The trigger in the shared evaluator's language (``and`` binds tighter than ``or``)."""
        return " or ".join(" and ".join(f"{c.quantity} {c.op} {c.threshold!r}" for c in group) for group in self.any_of)

    def holds(self, values: Mapping[str, float]) -> bool:
        """True when the condition holds for these readouts."""
        tree = self.tree if self.tree is not None else expressions.parse(self.expression, functions={}, comparisons=True)
        try:
            return bool(expressions.evaluate(tree, lambda name: float(values[name]), functions={}, comparisons=True))
        except expressions.ExpressionError as exc:
            raise CarabmError(f"trigger {self.text!r}: {exc}") from None


def _tokens(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise TriggerSyntaxError(f"unexpected {text[pos:].strip()[:12]!r} at character {pos + 1}")
        out.append(match.group(0).strip())
        pos = match.end()
    return out


def parse_trigger(text: str) -> Trigger:
    """Parse a trigger or raise :class:`TriggerSyntaxError` naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise TriggerSyntaxError("empty trigger; expected e.g. 'crs_grade >= 2'")
    tokens = _tokens(text)
    groups: list[list[Clause]] = [[]]
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise TriggerSyntaxError(f"incomplete clause {' '.join(tokens[i:])!r}; expected QUANTITY OP NUMBER")
        name, op, number = tokens[i : i + 3]
        if name not in quantities():
            raise TriggerSyntaxError(
                f"unknown quantity {name!r}; allowed: {', '.join(SCALARS)}, serum.<cytokine>, cns.<cytokine>"
            )
        if op not in _OPS:
            raise TriggerSyntaxError(f"expected a comparison (>=, >, <=, <, ==, !=) after {name!r}, got {op!r}")
        try:
            threshold = float(number)
        except ValueError:
            raise TriggerSyntaxError(f"expected a number after {name} {op}, got {number!r}") from None
        if not math.isfinite(threshold):
            raise TriggerSyntaxError(f"expected a finite number after {name} {op}, got {number!r}")
        groups[-1].append(Clause(name, op, threshold))
        i += 3
        if i == len(tokens):
            break
        joiner = tokens[i].lower()
        if joiner == "or":
            groups.append([])
        elif joiner != "and":
            raise TriggerSyntaxError(f"expected 'and' or 'or', got {tokens[i]!r}")
        i += 1
    trigger = Trigger(text, tuple(tuple(g) for g in groups))
    return Trigger(text, trigger.any_of, expressions.parse(trigger.expression, functions={}, comparisons=True))


def trigger_problems(text: str) -> list[str]:
    """Problems with a trigger expression (empty when it parses)."""
    try:
        parse_trigger(text)
    except TriggerSyntaxError as exc:
        return [f"malformed trigger {text!r}: {exc}"]
    return []


def therapy_trigger_problems(config: Any) -> list[str]:
    """The config check of every therapy's ``when`` (registered with the catalog, run by config validation)."""
    problems: list[str] = []
    for i, therapy in enumerate(config.therapies):
        if therapy.when is not None:
            problems += [f"therapies[{i}].when: {p}" for p in trigger_problems(therapy.when)]
    return problems


register_check(therapy_trigger_problems)
