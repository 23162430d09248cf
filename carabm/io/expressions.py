"""The one safe evaluator of the little expression languages in configs: therapy triggers and sweep ``derived:``.

Built on simpleeval (no ``eval``): numbers, dotted names resolved by the caller
(``patient.weight_kg``, ``serum.IL6``), ``+ - * / **``, parentheses, comparisons,
``and``/``or``, and only the functions named by the caller. Nothing else: no attribute
access, subscripts, strings, assignments or comprehensions. Limits: powers with a base or
exponent above :data:`MAX_POWER` and results that are not finite numbers (inf, NaN, also a
comparison with a NaN operand) are errors, so ``9**9**9`` fails at once.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import simpleeval

#: largest base or exponent of ``**``
MAX_POWER = 10_000
#: the functions ``derived:`` expressions may call
MATH_FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "round": round, "int": int, "float": float, "exp": math.exp,
                                                 "log": math.log, "sqrt": math.sqrt}  # fmt: skip


class ExpressionError(ValueError):
    """An expression outside the language or its limits, or one whose value is not a finite number."""


def _finite(value: Any, what: str) -> Any:
    if isinstance(value, bool):
        return value
    if not isinstance(value, (int, float)):
        raise ExpressionError(f"{what} is {value!r}, not a real number")
    if isinstance(value, int) and value.bit_length() > 1024 or isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"{what} is {'too large' if isinstance(value, int) else value} (not a finite number)")
    return value


def _power(a: Any, b: Any) -> Any:
    if abs(a) > MAX_POWER or abs(b) > MAX_POWER or a and b > 0 and b * math.log10(abs(a)) > 308:
        raise ExpressionError(f"{a!r} ** {b!r} is too large (base and exponent at most {MAX_POWER}, result at most 1e308)")
    return operator.pow(a, b)


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if any(isinstance(x, float) and math.isnan(x) for x in (a, b)):
            raise ExpressionError(f"comparison with NaN ({a!r} vs {b!r}) has no meaning")
        return op(a, b)

    return compare


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.Pow: _power, ast.USub: operator.neg, ast.UAdd: operator.pos}  # fmt: skip
_COMPARISONS = {ast.Gt: _compare(operator.gt), ast.GtE: _compare(operator.ge), ast.Lt: _compare(operator.lt),
                ast.LtE: _compare(operator.le), ast.Eq: _compare(operator.eq), ast.NotEq: _compare(operator.ne)}  # fmt: skip
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Constant, ast.Name, ast.Attribute,
            ast.And, ast.Or, ast.Load, *_ARITHMETIC, *_COMPARISONS)  # fmt: skip


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted_name(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def parse(text: str, *, functions: Mapping[str, Callable[..., Any]] = MATH_FUNCTIONS, comparisons: bool = False) -> ast.Expression:
    """Parse and check an expression; :class:`ExpressionError` names the first thing outside the language."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError:
        raise ExpressionError("not an expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED) or isinstance(node, (ast.Compare, ast.BoolOp)) and not comparisons:
            raise ExpressionError(f"unsupported expression {ast.unparse(node)!r}")
        if isinstance(node, ast.Attribute) and dotted_name(node) is None:
            raise ExpressionError(f"unsupported expression {ast.unparse(node)!r} (only dotted names)")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in functions or node.keywords):
            raise ExpressionError(f"unsupported expression {ast.unparse(node)!r} (functions: {', '.join(functions) or 'none'})")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"unsupported constant {ast.unparse(node)!r} (numbers only)")
            _finite(node.value, f"the number {ast.unparse(node)}")
    return tree


class _Evaluator(simpleeval.SimpleEval):
    """simpleeval with our operators and dotted names looked up by the caller (no attribute access)."""

    def __init__(self, lookup: Callable[[str], Any], functions: Mapping[str, Callable[..., Any]]):
        super().__init__(operators={**_ARITHMETIC, **_COMPARISONS}, functions=dict(functions), names={})
        self.lookup = lookup
        self.nodes[ast.Name] = self._dotted
        self.nodes[ast.Attribute] = self._dotted

    def _dotted(self, node: ast.AST) -> Any:
        name = dotted_name(node)
        return _finite(self.lookup(name), name)


def evaluate(
    expression: str | ast.Expression,
    lookup: Callable[[str], Any],
    *,
    functions: Mapping[str, Callable[..., Any]] = MATH_FUNCTIONS,
    comparisons: bool = False,
) -> Any:
    """The value of ``expression`` (text, or a tree from :func:`parse`), names resolved by ``lookup(dotted_name)``.

    Raises :class:`ExpressionError` for anything outside the language or its limits, and
    for a result that is not a finite number; ``lookup``'s own errors pass through.
    """
    tree = expression if isinstance(expression, ast.Expression) else parse(expression, functions=functions, comparisons=comparisons)
    try:
        value = _Evaluator(lookup, functions).eval(ast.unparse(tree), previously_parsed=tree.body)
    except simpleeval.NumberTooHigh as exc:
        raise ExpressionError(f"too large ({exc})") from None
    except simpleeval.InvalidExpression as exc:
        raise ExpressionError(str(exc)) from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        if isinstance(exc, ExpressionError):
            raise
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None
    return _finite(value, "the result")
