"""The base of every config section (its own module so that sections can live beside the schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors; ints never pass as bools."""

    # allow_inf_nan=False: every float field rejects .inf and .nan (one rule for all of them)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True, allow_inf_nan=False)
