"""VALIDATION.md facts, each checked on the real model at reduced size (configs/quickstart.yaml,
14 days on a small lattice). The multi-seed version with the report is ``scripts/validate.py``."""

from __future__ import annotations

import pytest

from carabm.validation import FACTS

pytestmark = pytest.mark.slow
@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f"fact{f.number}")
def test_fact(scenario, fact):
    passed, numbers = fact.check(*[scenario(name) for name in fact.scenarios])
    assert passed, f"fact {fact.number} ({fact.text}): {numbers}"
