"""The shape rules of every layer type, in files by family.

:data:`FAMILIES` lists them; the registry reads it, and nothing else registers a rule.
"""

from __future__ import annotations

from . import (
    attention,
    combine,
    conv,
    elementwise,
    embedding,
    linear,
    norm,
    pad,
    pool,
    recurrent,
    resample,
    reshape,
    tensors,
)
from .base import Rule, RuleSet

__all__ = ["FAMILIES", "all_rules"]

FAMILIES: tuple[RuleSet, ...] = (
    elementwise.rules,
    linear.rules,
    conv.rules,
    pool.rules,
    norm.rules,
    pad.rules,
    resample.rules,
    reshape.rules,
    combine.rules,
    embedding.rules,
    recurrent.rules,
    attention.rules,
    tensors.rules,
)


def all_rules() -> dict[str, Rule]:
    """Every family's rules by layer type; a type in two families is an error."""
    out: dict[str, Rule] = {}
    for family in FAMILIES:
        for name, rule in family.rules.items():
            if name in out:
                raise ValueError(f"shape rule for {name} registered twice")
            out[name] = rule
    return out
