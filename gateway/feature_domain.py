"""The exact range of values the gateway accepts for each feature, for the OpenAPI document.

The rule itself lives in the core (:class:`irisflow.features.FeatureSchema`: finite in float32,
and within ``features.max_reference_std`` training standard deviations of the training mean). A
schema that says only "a number" lets a client (or a fuzzer) send ``-1.8e308`` believing it
valid, and get a 422. A schema whose bounds were recomputed here with the formula could differ
from the rule by one rounding step at the edge, which is exactly where contract tests probe. So
the bounds are *found* with the rule as the oracle: the accepted values of one feature form an
interval of doubles (``|x - mean|`` is monotone in ``x`` however it rounds), and a binary search
over the doubles in order finds its two ends, each the last double the rule accepts.
"""

from __future__ import annotations

import struct

from irisflow.features import FLOAT32_MAX, FeatureSchema

__all__ = ["accepted_range"]

_SIGN = 1 << 63


def _ordinal(x: float) -> int:
    """An integer that orders like ``x`` (adjacent doubles are adjacent integers)."""
    (bits,) = struct.unpack("<Q", struct.pack("<d", x))
    return -(bits ^ _SIGN) if bits & _SIGN else int(bits)


def _double(ordinal: int) -> float:
    bits = ordinal if ordinal >= 0 else (-ordinal) | _SIGN
    (x,) = struct.unpack("<d", struct.pack("<Q", bits))
    return float(x)


def _edge(schema: FeatureSchema, name: str, inside: float, outside: float) -> float:
    """The accepted double nearest ``outside``, searching from ``inside`` (accepted)."""
    good, bad = _ordinal(inside), _ordinal(outside)
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if schema.value_problem(name, _double(middle)) is None:
            good = middle
        else:
            bad = middle
    return _double(good)


def accepted_range(schema: FeatureSchema, name: str, seed: float) -> tuple[float, float] | None:
    """``(lowest, highest)`` accepted for ``name``, both accepted, everything between accepted
    and nothing beyond; ``seed`` is any value inside (the training mean). ``None`` if the seed
    itself is refused (then no value can be promised)."""
    if schema.value_problem(name, seed) is not None:
        return None
    beyond = 2 * FLOAT32_MAX  # refused by the float32 rule whatever the statistics say
    return _edge(schema, name, seed, -beyond), _edge(schema, name, seed, beyond)
