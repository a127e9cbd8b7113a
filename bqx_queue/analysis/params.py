"""What the analysis parameter objects share: validation, and seeds from one SeedSequence tree.

Each step's parameters (SelectionParams, TrainParams, ConfirmParams, EraParams) are a frozen
pydantic model built by `from_settings`: the Settings fields hold the only defaults, and the
model refuses values its arithmetic cannot take (a threshold of 0.5 would divide the error bound
by zero), as scikit-learn's estimators check their `_parameter_constraints`.

Every random stream of a run descends from the settings seed: `SeedSequence(seed,
spawn_key=(pair, stream, horizon))` is the child that `SeedSequence(seed).spawn` would reach by
that path, so streams are independent of each other and the same seed gives the same numbers.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from pydantic import BaseModel, ConfigDict

LIGHTGBM_SEED_BITS = 31  # LightGBM reads its seed into a C int


class Stream(IntEnum):
    """What a random stream drives (the middle entry of its spawn key)."""

    SELECTION = 0  # complementary halves and feature weights of stability selection
    MODELS = 1  # LightGBM's bagging and feature fractions
    CONFIRMATION = 2  # permutations and block-bootstrap draws of the held-out verdicts
    ERAS = 3  # reference features, halves and weights of the per-era selections
    SHAP = 4  # the held-out rows SHAP explains
    POOLED = 5  # the held-out days a family's pooled effect resamples (keyed by family, not pair)


class AnalysisParams(BaseModel):
    """A validated, immutable parameter object of one analysis step."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


def pair_key(pair: str) -> int:
    """Return a pair name as a spawn-key entry (its UTF-8 bytes as one integer: no collisions)."""
    return int.from_bytes(pair.encode(), "big")


def seed_sequence(seed: int, pair: str, stream: Stream, horizon: int = 0) -> np.random.SeedSequence:
    """Return the SeedSequence of one pair's (and horizon's) `stream` under the run's seed.

    >>> a = seed_sequence(42, "eurusd", Stream.SELECTION)
    >>> b = seed_sequence(42, "eurusd", Stream.SELECTION)
    >>> bool(np.random.default_rng(a).random() == np.random.default_rng(b).random())
    True
    >>> c = seed_sequence(42, "gbpusd", Stream.SELECTION)
    >>> bool(np.random.default_rng(a).random() == np.random.default_rng(c).random())
    False
    """
    return np.random.SeedSequence(seed, spawn_key=(pair_key(pair), int(stream), horizon))


def lightgbm_seed(sequence: np.random.SeedSequence) -> int:
    """Return a seed LightGBM accepts (a non-negative C int) drawn from `sequence`."""
    return int(sequence.generate_state(1, np.uint32)[0]) >> (32 - LIGHTGBM_SEED_BITS)
