"""``derived:`` values of a sweep: arithmetic over a member's config (``2e6 * patient.weight_kg``).

The expressions are evaluated by the shared safe evaluator :mod:`carabm.io.expressions`
(also used by therapy triggers), with the member's config as the only names.
"""

from __future__ import annotations

from typing import Any

from carabm.errors import ConfigError
from carabm.io import expressions
from carabm.io.dotted import get_path


def evaluate(expression: str, data: dict[str, Any], where: str) -> Any:
    """Evaluate an arithmetic expression over a member's config (``2e6 * patient.weight_kg``).

    Names are dotted config keys; numbers, ``+ - * / **``, parentheses and
    ``min max round int float exp log sqrt`` are allowed, nothing else (the shared safe
    evaluator :mod:`carabm.io.expressions`, with its limits: ``9**9**9`` fails at once).
    """

    def lookup(key: str) -> Any:
        value = get_path(data, key)
        if value is None:
            raise ConfigError(f"{where}: {key!r} is not set in the member's config")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key!r} is not a number ({value!r})")
        return value

    try:
        return expressions.evaluate(str(expression), lookup)
    except expressions.ExpressionError as exc:
        raise ConfigError(f"{where}: {expression!r}: {exc}") from None
