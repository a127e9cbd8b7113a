"""Nonlinear basis columns for selection: what a tree can see that a straight line cannot.

LAR on the linear columns finds a feature only through its correlation with the target. A feature
that acts through a threshold on |x|, a square or a U shape has almost none, and a member of a
product x*y or a regime gate x*sign(y) has none at all. So beside every feature's linear column,
each half-sample of stability selection chooses a few more columns from its own blocks:

- **shapes** |z| (z the standardised feature): each feature is cut at its quantiles, and per time
  block and edge the row count and every horizon's label sums (y and y^2) of the rows above it
  are kept, so a half's correlation ratio eta^2 (the target's between-bin share of variance: any
  shape a step function can follow) is a sum of its blocks, as its Gram is. eta^2 - r^2 is what a
  line misses; a half takes |z| for the features where it is largest and stands out of the bulk;
- **pairs**: a pure product or gate has no signal in either member alone, so no one-feature
  statistic finds it. Every pair is scanned once, on a sample of the selection rows: the sum of
  sign(y) z_i z_j for all i, j (one weighted X'X); the features in the strongest products, with
  the most heteroscedastic ones (Var(y | x) grows with |x| for a member), are the members. Per
  block, the sums behind corr(z_i z_j, y) (product) and corr(z_i (sign z_j - mean), y) (gate) of
  every member with every other feature are kept (a few matrix products: no pair's column is
  formed), and a half takes its best-scoring pairs.

The Grams hold the union of the halves' choices; a half's LAR may enter only the columns its own
rows chose, so the choice is part of its base selector and the complementary-pairs argument
covers it (the scan narrows whom a half may pair, and reads every selection row's sample). A
feature is selected in a fit when any column reading it enters (both features of a pair column).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cached_property

import numpy as np
from pydantic import Field
from threadpoolctl import threadpool_limits

from bqx_queue.analysis.params import AnalysisParams
from bqx_queue.config import Settings

BIN_SAMPLE_ROWS = 8_000  # rows the quantile edges are read from
COLUMN_CHUNK = 512
ROBUST_SAMPLE = 20_000  # values a robust z's median and MAD are read from
CHUNK_BYTES = 64 * 1024**2  # the pair sums' rows at a time (their signs and squares beside them)
UNION_FACTOR = 2  # the Grams hold at most this many times the columns one half chooses
BASIS_ROWS = 20_000  # selection rows the binned and pair statistics read (evenly spaced)
SCAN_ROWS = 5_000  # rows the all-pairs product scan reads (every ~11th of 57,000: labels are 45-row sums)
SCAN_PANEL = 1024  # its columns at a time
SUBSTITUTE_LEVEL = 0.7  # a partner this correlated with its member is a shape of the member, not a pair


class BasisParams(AnalysisParams):
    """Which nonlinear columns a pair's selection gets (Settings' nonlinear_* fields)."""

    bins: int = Field(ge=3, le=64)  # quantile bins per feature (their edges, bins - 1, are what is kept)
    shapes: int = Field(ge=0)
    members: int = Field(ge=0)
    pairs: int = Field(ge=0)
    min_z: float = Field(ge=0)  # a column's statistic must stand this far out of the features' bulk

    @classmethod
    def from_settings(cls, settings: Settings) -> BasisParams:
        """Return the basis parameters of `settings`; none at all when the basis is linear."""
        nonlinear = settings.selection_basis == "nonlinear"
        return cls(
            bins=settings.nonlinear_bins,
            shapes=settings.nonlinear_shapes if nonlinear else 0,
            members=settings.nonlinear_members if nonlinear else 0,
            pairs=settings.nonlinear_pairs if nonlinear else 0,
            min_z=settings.nonlinear_min_z,
        )

    def within(self, q: int) -> BasisParams:
        """Return the parameters with each half's shapes and pairs at most half of the q units a
        fit selects each: a half's screened-in columns are its strongest statistics, noise or
        not, and at small q (40 features: q = 6) they would otherwise outnumber LAR's steps."""
        cap = max(1, q // 2)
        return self.model_copy(update={"shapes": min(self.shapes, cap), "pairs": min(self.pairs, cap)})


class Shape(StrEnum):
    """How a basis column reads its feature(s)."""

    LINEAR = "linear"  # z
    ABSOLUTE = "absolute"  # |z|: thresholds on |x|, squares, U shapes
    PRODUCT = "product"  # z_i z_j
    GATE = "gate"  # z_i (sign z_j - mean): x pushes one way in one regime of y, the other way in the other


@dataclass(frozen=True)
class BasisColumn:
    """One nonlinear column: its shape, the feature it reads and, for a pair, the partner."""

    shape: Shape
    feature: int
    partner: int = -1
    score: float = 0.0  # the screen's statistic that chose it (eta^2 - r^2, or |corr| of the pair column)


@dataclass(frozen=True)
class BinnedAssociation:
    """Per feature, over some rows, the largest over horizons of: r^2 (linear), eta^2 (binned:
    any shape) and eta^2 of the squared target (heteroscedasticity)."""

    linear: np.ndarray
    binned: np.ndarray
    variance: np.ndarray

    @property
    def strength(self) -> np.ndarray:
        """Return the statistic a width screen ranks by: it sees lines and shapes alike."""
        return np.maximum(self.linear, self.binned)

    def shapes(self, count: int, min_z: float) -> list[BasisColumn]:
        """Return |z| columns for at most `count` features whose binned association exceeds
        their linear one by more than the rest do: a robust z of the excess over all features
        (most of which carry nothing) of at least `min_z`."""
        excess = self.binned - self.linear
        outlying = robust_z(excess) >= min_z
        order = np.argsort(-excess, kind="stable")[:count]
        return [BasisColumn(Shape.ABSOLUTE, int(j), score=float(excess[j])) for j in order if outlying[j]]

    def members(self, count: int) -> np.ndarray:
        """Return the `count` features whose bins best explain the squared target: the members
        a product or gate would show (Var(target | x) grows with |x|)."""
        ranked = np.argsort(-self.variance, kind="stable")[:count]
        return ranked[self.variance[ranked] > 0]


def robust_z(values: np.ndarray) -> np.ndarray:
    """Return each value's distance above the median in units of the scaled median absolute
    deviation: most features carry nothing, so the bulk of a statistic is its null.

    >>> robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0])).round(1).tolist()
    [-1.3, -0.7, 0.0, 0.7, 65.4]
    """
    bulk = values.ravel()[:: max(1, values.size // ROBUST_SAMPLE)]  # the bulk's quantiles need no more
    median = np.median(bulk)
    spread = 1.4826 * np.median(np.abs(bulk - median))
    return (values - median) / spread if spread > 0 else np.where(values > median, np.inf, 0.0)


def _quantile_edges(matrix: np.ndarray, rows: np.ndarray, columns: slice, bins: int) -> np.ndarray:
    """Return (bins - 1, columns) quantile edges of the columns, read from an even sample of rows."""
    step = max(1, len(rows) // BIN_SAMPLE_ROWS)
    sample = matrix[rows[::step], columns].astype(np.float32)
    return np.quantile(sample, np.arange(1, bins) / bins, axis=0).astype(np.float32)


def _eta_squared(bin_counts: np.ndarray, bin_sums: np.ndarray, total: float, sum_: float, sum_sq: float) -> np.ndarray:
    """Return the between-bin share of variance, from (..., bins) counts and sums of a quantity
    whose total count, sum and sum of squares are given."""
    between = np.divide(bin_sums**2, bin_counts, out=np.zeros_like(bin_sums), where=bin_counts > 0).sum(axis=-1)
    spread = sum_sq - sum_**2 / total
    return np.clip((between - sum_**2 / total) / spread, 0.0, 1.0) if spread > 0 else np.zeros(between.shape)


def sampled(block: np.ndarray, step: int) -> slice | np.ndarray:
    """Return every `step`-th row of a block: a slice (a view of the matrix, not a gather) when
    the rows are evenly spaced, as a time block's are."""
    rows = block[::step]
    if len(rows) > 1 and np.all(np.diff(rows) == rows[1] - rows[0]):
        return slice(int(rows[0]), int(rows[-1]) + 1, int(rows[1] - rows[0]))
    return rows


@dataclass(frozen=True)
class BlockBins:
    """Per time block: for each feature and each of its quantile edges, the row count and the
    label sums (y and y^2 per horizon) of the rows above the edge, with the sums a linear fit
    needs. A bin's sums are differences of these, and a half's are sums of its blocks, as its
    Gram is."""

    above: np.ndarray  # (blocks, edges, 1 + 2 horizons, features): count, y sums, y^2 sums above each edge
    totals: np.ndarray  # (blocks, 1 + 2 horizons): the block's count, y sums, y^2 sums
    x_sum: np.ndarray  # (blocks, features)
    x_sq: np.ndarray  # (blocks, features)
    xy: np.ndarray  # (blocks, horizons, features)
    y_fourth: np.ndarray  # (blocks, horizons)

    def association(self, in_half: np.ndarray | None = None) -> BinnedAssociation:
        """Return the association over the blocks in `in_half` (a mask; None: every block)."""
        weights = np.ones(len(self.totals)) if in_half is None else in_half.astype(np.float64)
        above = np.tensordot(weights, self.above, axes=1)  # (edges, quantities, features)
        totals = weights @ self.totals
        # bin k holds the rows above edge k - 1 and not above edge k (edge -1: every row)
        upper = np.concatenate([np.broadcast_to(totals[None, :, None], (1, *above.shape[1:])), above])
        lower = np.concatenate([above, np.zeros((1, *above.shape[1:]))])
        per_bin = np.moveaxis(upper - lower, 0, -1)  # (quantities, features, bins)
        n = float(totals[0])
        horizons = (len(totals) - 1) // 2
        x_sum, x_sq = weights @ self.x_sum, weights @ self.x_sq
        xy = np.tensordot(weights, self.xy, axes=1)
        y_sum, y_sq, y_fourth = totals[1 : 1 + horizons], totals[1 + horizons :], weights @ self.y_fourth
        p = xy.shape[1]
        x_var = np.maximum(x_sq - x_sum**2 / n, 0)
        linear, binned, variance = np.zeros(p), np.zeros(p), np.zeros(p)
        for h in range(horizons):
            y_var = y_sq[h] - y_sum[h] ** 2 / n
            covariance = xy[h] - x_sum * y_sum[h] / n
            r2 = np.divide(covariance**2, x_var * y_var, out=np.zeros(p), where=(x_var > 0) & (y_var > 0))
            linear = np.maximum(linear, r2)
            binned = np.maximum(binned, _eta_squared(per_bin[0], per_bin[1 + h], n, y_sum[h], y_sq[h]))
            variance = np.maximum(
                variance, _eta_squared(per_bin[0], per_bin[1 + horizons + h], n, y_sq[h], y_fourth[h])
            )
        return BinnedAssociation(linear, binned, variance)


@threadpool_limits.wrap(limits=1)  # its products are 15 rows thin: a second BLAS thread only waits (5x slower)
def block_bins(
    matrix: np.ndarray, blocks: list[np.ndarray], targets: np.ndarray, bins: int, step: int = 1
) -> BlockBins:
    """Return the per-block binned sums of every feature over every `step`-th row of each block
    (targets: (rows of the matrix, horizons)).

    Quantile edges come from the rows of every block (they read feature values, never labels).
    Then, a chunk of columns at a time, each edge's indicator (value above the edge) is formed as
    float32 and one matrix product with [1, y, y^2] gives its count and label sums for every
    horizon: the work is a comparison and a thin product per edge, never a one-hot of bins.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((4000, 3)).astype(np.float32)
    >>> y = (np.abs(x[:, [0]]) + 0.5 * x[:, [1]] + rng.standard_normal((4000, 1))).astype(np.float64)
    >>> found = block_bins(x, np.array_split(np.arange(4000), 4), y, bins=8).association()
    >>> [bool(v > 0.1) for v in found.binned - found.linear]  # only |x0| is more than a line
    [True, False, False]
    >>> [c.feature for c in found.shapes(1, min_z=3.0)], found.members(1).tolist()
    ([0], [0])
    """
    rows = np.concatenate(blocks)
    p, horizons, count = matrix.shape[1], targets.shape[1], len(blocks)
    above = np.zeros((count, bins - 1, 1 + 2 * horizons, p))
    totals = np.zeros((count, 1 + 2 * horizons))
    x_sum, x_sq, xy = np.zeros((count, p)), np.zeros((count, p)), np.zeros((count, horizons, p))
    y_fourth = np.zeros((count, horizons))
    for index, block in enumerate(blocks):
        labels = targets[sampled(block, step)]
        weights = np.ascontiguousarray(np.c_[np.ones(len(labels)), labels, labels**2].T, dtype=np.float32)
        totals[index] = weights.sum(axis=1, dtype=np.float64)
        y_fourth[index] = (labels**4).sum(axis=0)
    for start in range(0, p, COLUMN_CHUNK):
        columns = slice(start, min(p, start + COLUMN_CHUNK))
        edges = _quantile_edges(matrix, rows, columns, bins)
        for index, block in enumerate(blocks):
            values = np.ascontiguousarray(matrix[sampled(block, step), columns], dtype=np.float32)
            labels = targets[sampled(block, step)]
            weights = np.ascontiguousarray(np.c_[np.ones(len(labels)), labels, labels**2].T, dtype=np.float32)
            indicator = np.empty_like(values)
            for k, edge in enumerate(edges):
                np.greater(values, edge, out=indicator, casting="unsafe")
                above[index, k, :, columns] = weights @ indicator
            x_sum[index, columns] = weights[0] @ values
            x_sq[index, columns] = np.einsum("ij,ij->j", values, values, dtype=np.float64)
            xy[index, :, columns] = weights[1 : 1 + horizons] @ values
    return BlockBins(above, totals, x_sum, x_sq, xy, y_fourth)


@dataclass(frozen=True)
class BlockPairSums:
    """Per time block, for a pool of members and every feature as partner: the sums behind the
    correlation of each product z_i z_j and gate z_i (sign z_j - mean) with each target."""

    pool: np.ndarray  # (members,) feature indices
    product_y: np.ndarray  # (blocks, horizons, members, features) float32: sum z_i z_j y
    gate_y: np.ndarray  # (blocks, horizons, members, features) float32: sum z_i s_j y
    cross: np.ndarray  # (blocks, members, features): sum z_i z_j
    product_sq: np.ndarray  # (blocks, members, features): sum z_i^2 z_j^2
    sign_sum: np.ndarray  # (blocks, features): sum s_j
    member_y: np.ndarray  # (blocks, horizons, members): sum z_i y
    member_sq: np.ndarray  # (blocks, members): sum z_i^2
    n: np.ndarray  # (blocks,)
    y_moments: np.ndarray  # (blocks, 2, horizons): sums of y and y^2

    @threadpool_limits.wrap(limits=1)
    def over(self, in_half: np.ndarray) -> PairMoments:
        """Return the sums over the blocks in `in_half` (a mask)."""
        weights, single = in_half.astype(np.float64), in_half.astype(np.float32)  # float32 sums stay float32
        return PairMoments(
            self.pool,
            float(weights @ self.n),
            np.tensordot(weights, self.y_moments, axes=1),
            np.tensordot(single, self.product_y, axes=1),
            np.tensordot(single, self.gate_y, axes=1),
            np.tensordot(weights, self.cross, axes=1),
            np.tensordot(weights, self.product_sq, axes=1),
            weights @ self.sign_sum,
            np.tensordot(weights, self.member_y, axes=1),
            weights @ self.member_sq,
        )


@dataclass(frozen=True)
class PairMoments:
    """BlockPairSums summed over some blocks; the other half of a complementary pair is the
    total minus this one (half the summing)."""

    pool: np.ndarray
    n: float
    y_moments: np.ndarray
    product_y: np.ndarray
    gate_y: np.ndarray
    cross: np.ndarray
    product_sq: np.ndarray
    sign_sum: np.ndarray
    member_y: np.ndarray
    member_sq: np.ndarray

    def __sub__(self, other: PairMoments) -> PairMoments:
        return PairMoments(
            self.pool,
            *(getattr(self, f.name) - getattr(other, f.name) for f in fields(self) if f.name != "pool"),
        )

    def pairs(self, count: int, min_z: float) -> list[BasisColumn]:
        """Return the `count` best product and gate columns of the pool's members, scored by
        their largest |correlation| with a target, of those whose score has a robust z of at
        least `min_z` among all member x partner scores."""
        if len(self.pool) == 0 or count <= 0:
            return []
        n = self.n
        y_sum, y_sq = self.y_moments
        y_mean, y_var = y_sum / n, y_sq / n - (y_sum / n) ** 2
        cross, product_sq = self.cross / n, self.product_sq / n
        sign_mean, member_y, member_sq = self.sign_sum / n, self.member_y / n, self.member_sq / n
        # covariances with y; the gate's column z_i (s_j - mean s_j) holds none of z_i's own linear
        # signal, and its variance is taken as if z_i and s_j were independent (a screen's approximation)
        product_var = product_sq - cross**2
        gate_var = member_sq[:, None] * (1 - sign_mean[None, :] ** 2)
        p = cross.shape[-1]
        features = self.pool
        allowed = np.abs(cross) / np.sqrt(np.maximum(member_sq, 1e-12))[:, None] < SUBSTITUTE_LEVEL
        allowed[np.arange(len(features)), features] = False

        def score(covariance: Callable[[int], np.ndarray], column_var: np.ndarray) -> np.ndarray:
            """Return each member x partner's largest |correlation| over the targets, one target
            at a time (a (targets, members, features) table would be several times the sums)."""
            spread = np.sqrt(np.maximum(column_var, 0))
            best = np.zeros_like(spread)
            for t in range(len(y_var)):
                denominator = spread * math.sqrt(max(float(y_var[t]), 0.0))
                corr = np.divide(np.abs(covariance(t)), denominator, out=np.zeros_like(spread), where=denominator > 0)
                np.maximum(best, corr, out=best)
            return np.where(allowed & (column_var > 1e-6), best, 0.0)

        def product_cov(t: int) -> np.ndarray:
            return self.product_y[t] / n - cross * y_mean[t]

        def gate_cov(t: int) -> np.ndarray:
            return self.gate_y[t] / n - member_y[t][:, None] * sign_mean[None, :]

        # each pair of features once, in the shape that scores it best (a gate and its product
        # correlate at about 0.8, and would otherwise take two of the half's places)
        candidates: dict[frozenset[int], BasisColumn] = {}
        for shape, table in ((Shape.PRODUCT, score(product_cov, product_var)), (Shape.GATE, score(gate_cov, gate_var))):
            outlying = robust_z(table) >= min_z
            top = min(2 * count, table.size - 1)
            best_first = np.argpartition(-table, top, axis=None)[:top]
            for flat in best_first[np.argsort(-table.ravel()[best_first], kind="stable")]:
                i, j = divmod(int(flat), p)
                if not outlying[i, j] or table[i, j] <= 0:
                    break
                member, value = int(features[i]), float(table[i, j])
                key = frozenset((member, j))
                if key not in candidates or candidates[key].score < value:
                    feature, partner = (min(member, j), max(member, j)) if shape is Shape.PRODUCT else (member, j)
                    candidates[key] = BasisColumn(shape, feature, partner, value)
        return sorted(candidates.values(), key=lambda column: -column.score)[:count]


@threadpool_limits.wrap(limits=1)  # thin products (pool rows): a second BLAS thread waits more than it works
def block_pair_sums(
    matrix: np.ndarray, blocks: list[np.ndarray], targets: np.ndarray, pool: np.ndarray, step: int = 1
) -> BlockPairSums:
    """Return the per-block pair sums of the `pool` members with every feature as partner, over
    every `step`-th row of each block.

    A pure product or gate has no signal in either member alone, so partners cannot be screened
    one feature at a time; here every partner is tried at once, as a few matrix products over row
    chunks (members x horizons x rows x features), without forming any pair's column.

    >>> rng = np.random.default_rng(1)
    >>> x = rng.standard_normal((6000, 5)).astype(np.float32)
    >>> y = (x[:, [2]] * np.sign(x[:, [4]]) + rng.standard_normal((6000, 1))).astype(np.float64)
    >>> sums = block_pair_sums(x, [np.arange(3000), np.arange(3000, 6000)], y, np.array([2]))
    >>> best = sums.over(np.array([True, True])).pairs(1, min_z=3.0)[0]
    >>> best.shape.value, best.feature, best.partner
    ('gate', 2, 4)
    """
    p, horizons, m, count = matrix.shape[1], targets.shape[1], len(pool), len(blocks)
    product_y = np.zeros((count, horizons, m, p), dtype=np.float32)
    gate_y = np.zeros((count, horizons, m, p), dtype=np.float32)
    cross, product_sq = np.zeros((count, m, p)), np.zeros((count, m, p))
    sign_sum, member_y, member_sq = np.zeros((count, p)), np.zeros((count, horizons, m)), np.zeros((count, m))
    n, y_moments = np.zeros(count), np.zeros((count, 2, horizons))
    for index, block in enumerate(blocks):
        rows = block[::step]
        for start in range(0, len(rows), _row_chunk(p)):
            chunk = rows[start : start + _row_chunk(p)]
            values = np.asfortranarray(matrix[sampled(chunk, 1)], dtype=np.float32)
            signs = np.sign(values)
            members = values[:, pool]
            labels = targets[sampled(chunk, 1)]
            weighted = (members[:, None, :] * labels[:, :, None]).astype(np.float32).reshape(len(chunk), horizons * m)
            product_y[index] += (weighted.T @ values).reshape(horizons, m, p)
            gate_y[index] += (weighted.T @ signs).reshape(horizons, m, p)
            cross[index] += members.T @ values
            product_sq[index] += np.square(members).T @ np.square(values)
            sign_sum[index] += signs.sum(axis=0, dtype=np.float64)
            member_y[index] += weighted.sum(axis=0, dtype=np.float64).reshape(horizons, m)
            member_sq[index] += np.square(members, dtype=np.float64).sum(axis=0)
            n[index] += len(chunk)
            y_moments[index] += [labels.sum(axis=0), (labels**2).sum(axis=0)]
    return BlockPairSums(pool, product_y, gate_y, cross, product_sq, sign_sum, member_y, member_sq, n, y_moments)


def basis_values(matrix: np.ndarray, columns: list[BasisColumn], rows: np.ndarray) -> np.ndarray:
    """Return the basis columns' values on every row of the matrix ((rows, columns) float32;
    the sign means of gates are taken over `rows`, the selection rows)."""
    values = np.zeros((matrix.shape[0], len(columns)), dtype=np.float32)
    for k, column in enumerate(columns):
        z = matrix[:, column.feature]
        if column.shape is Shape.ABSOLUTE:
            values[:, k] = np.abs(z)
        elif column.shape is Shape.PRODUCT:
            values[:, k] = z * matrix[:, column.partner]
        elif column.shape is Shape.GATE:
            signs = np.sign(matrix[:, column.partner])
            values[:, k] = z * (signs - signs[rows].mean())
        else:
            values[:, k] = z
    return values


@dataclass(frozen=True)
class GramColumns:
    """What each column of the block Grams reads: first the linear columns of the features that
    entered selection (prepared feature indices), then the nonlinear basis columns."""

    linear: np.ndarray
    basis: list[BasisColumn]
    total_features: int | None = None  # the features frequencies are indexed by (default: the linear columns)

    @property
    def entered(self) -> int:
        """Return the number of features in selection: the p of the error bound."""
        return len(self.linear)

    @property
    def features(self) -> int:
        return self.total_features if self.total_features is not None else len(self.linear)

    def read_by(self, column: int) -> tuple[int, ...]:
        """Return the features a Gram column reads."""
        if column < len(self.linear):
            return (int(self.linear[column]),)
        basis = self.basis[column - len(self.linear)]
        return (basis.feature,) if basis.partner < 0 else (basis.feature, basis.partner)

    def features_read(self, path: list[int]) -> np.ndarray:
        """Return the distinct features read by the columns of one fit's path."""
        return np.fromiter({f for column in path for f in self.read_by(column)}, dtype=np.int64)

    @cached_property
    def units(self) -> np.ndarray:
        """Return each column's unit of selection: its feature's linear column, its feature's |x|,
        or its pair of features (the product and the gate of two features are one unit: they
        correlate at about 0.8, and halves may choose either)."""
        keys: dict[tuple[int, ...], int] = {}
        units = list(range(self.entered))
        for column in self.basis:
            key = (-1, column.feature) if column.partner < 0 else tuple(sorted((column.feature, column.partner)))
            units.append(keys.setdefault(key, self.entered + len(keys)))
        return np.asarray(units, dtype=np.int64)

    @property
    def unit_count(self) -> int:
        """Return the number of units: the p of the error bound."""
        return int(self.units.max()) + 1 if len(self.units) else 0

    def feature_frequencies(self, unit_frequencies: np.ndarray) -> np.ndarray:
        """Return each feature's selection frequency: that of its most frequent unit (a pair
        counts for both of its features)."""
        frequencies = np.zeros(self.features)
        np.maximum.at(frequencies, self.linear, unit_frequencies[: self.entered])
        for offset, column in enumerate(self.basis):
            frequency = unit_frequencies[self.units[self.entered + offset]]
            for feature in (column.feature, column.partner):
                if feature >= 0:
                    frequencies[feature] = max(frequencies[feature], frequency)
        return frequencies

    def shape_of(self, feature: int, column_frequencies: np.ndarray) -> tuple[Shape, int]:
        """Return how a feature was selected: the shape of its most frequent column, and the
        partner (another feature's index) when that column is a pair, else -1."""
        best, best_frequency = (Shape.LINEAR, -1), -1.0
        for position, linear_feature in enumerate(self.linear):
            if linear_feature == feature:
                best, best_frequency = (Shape.LINEAR, -1), float(column_frequencies[position])
                break
        for offset, column in enumerate(self.basis):
            if feature not in (column.feature, column.partner):
                continue
            frequency = float(column_frequencies[len(self.linear) + offset])
            if frequency > best_frequency:
                partner = column.partner if column.feature == feature else column.feature
                best, best_frequency = (column.shape, partner), frequency
        return best


def basis_memory(rows: int, width: int, params: BasisParams, blocks: int, horizons: int) -> tuple[int, int]:
    """Return the most basis columns a pair's Grams hold beside its features, and the bytes the
    basis statistics hold beside the matrix while they are formed (the largest of the binned
    sums, the pair sums with their row chunk, and the scan's row sample, with the columns' values)."""
    if not params.shapes and not params.pairs:
        return 0, 0
    binned = blocks * (params.bins - 1) * (1 + 2 * horizons) * width * 8  # kept per block
    targets = horizons + 1  # each horizon's and their consensus
    kept = blocks * (2 * 4 * targets + 2 * 8)  # per block: product and gate sums per target, cross and squares
    half = 2 * 4 * targets + 8 * 8  # a half's summed sums, and PairMoments.pairs' tables of one target
    pair_sums = 2 * params.members * width * (kept + half) + 3 * _row_chunk(width) * width * 4
    scan = min(rows, SCAN_ROWS) * width * 4 + width * SCAN_PANEL * 4
    columns = UNION_FACTOR * (params.shapes + params.pairs)
    return columns, max(binned, pair_sums, scan) + rows * columns * 4


def _row_chunk(width: int) -> int:
    """Return how many rows the pair sums read at once: about CHUNK_BYTES of float32 values."""
    return max(256, CHUNK_BYTES // (4 * max(1, width)))


@dataclass(frozen=True)
class NonlinearBasis:
    """A pair's nonlinear columns (the union of every half's choice), their values on every row,
    which of them each half may enter, and the association over every selection row."""

    columns: list[BasisColumn]
    values: np.ndarray  # (rows of the matrix, columns) float32
    allowed: list[np.ndarray]  # per half (complementary_halves' order): mask over `columns`
    association: BinnedAssociation

    @property
    def features(self) -> set[int]:
        """Return the features the basis reads (a width screen keeps them)."""
        return {f for c in self.columns for f in (c.feature, c.partner) if f >= 0}


def kept_columns(chosen: list[list[BasisColumn]], size: int) -> dict[tuple[Shape, int, int], int]:
    """Return the basis columns the Grams hold (key -> position): every half's choice when they
    are at most `size`, else the `size` that the most halves chose. A half still enters only the
    columns its own rows chose: keeping fewer removes options, it never adds one."""
    times: dict[tuple[Shape, int, int], int] = {}
    for half in chosen:
        for column in half:
            key = (column.shape, column.feature, column.partner)
            times[key] = times.get(key, 0) + 1
    ranked = sorted(times, key=lambda key: -times[key])[:size]  # stable: ties keep the first seen
    return {key: position for position, key in enumerate(ranked)}


def consensus_target(targets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return the mean of the standardised targets on every row of `targets` ((rows, 1)): the
    horizons' labels overlap (45-row sums read h rows ahead), and a pair's statistics are formed
    once for all of them."""
    labels = targets[rows]
    spread = labels.std(axis=0)
    scaled = (targets - labels.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return scaled.mean(axis=1, keepdims=True)


def product_scan(matrix: np.ndarray, rows: np.ndarray, targets: np.ndarray, size: int) -> np.ndarray:
    """Return up to `size` features (sorted) in the strongest products of any two features:
    the largest |mean over rows of sign(y) z_i z_j|, y the consensus target.

    A member of a product or gate has no signal alone, so every pair is scanned: one weighted
    X'X over an even sample of the rows (neighbouring minutes carry nearly the same labels),
    a panel of columns at a time. A gate x sign(v) shows here too (its product x v correlates
    with it at about 0.8). The scan reads a sample of every selection row, so it only narrows
    which members the halves may pair; each half still chooses its pairs on its own rows.
    """
    step = max(1, len(rows) // SCAN_ROWS)
    sample = rows[::step]
    values = np.asfortranarray(matrix[sample], dtype=np.float32)
    signs = np.sign(consensus_target(targets, rows)[sample]).astype(np.float32)
    p = values.shape[1]
    best = np.zeros(p)  # per feature, its largest |statistic| with another feature
    for start in range(0, p, SCAN_PANEL):  # the upper triangle, a panel of columns at a time
        stop = min(p, start + SCAN_PANEL)
        statistic = np.abs(values[:, :stop].T @ (values[:, start:stop] * signs)) / len(sample)
        statistic[np.arange(start, stop), np.arange(stop - start)] = 0.0  # z_i^2: a shape, not a pair
        best[:stop] = np.maximum(best[:stop], statistic.max(axis=1))
        best[start:stop] = np.maximum(best[start:stop], statistic.max(axis=0))
    return np.sort(np.argsort(-best, kind="stable")[:size]).astype(np.int64)


def nonlinear_basis(
    matrix: np.ndarray, blocks: list[np.ndarray], targets: np.ndarray, halves: list[np.ndarray], params: BasisParams
) -> NonlinearBasis:
    """Return the pair's nonlinear columns, each half (`halves`: block masks) choosing its own from
    its own blocks: |z| of the features whose binned fit a line explains least, and products and
    gates of the scan's members and the most heteroscedastic features with their best partners."""
    rows = np.concatenate(blocks)
    # neighbouring minutes carry nearly the same labels (45-row sums) and feature values: the
    # statistics read every `step`-th row, at most BASIS_ROWS of them
    step = max(1, math.ceil(len(rows) / BASIS_ROWS))
    bins = block_bins(matrix, blocks, targets, params.bins, step)
    by_half = [bins.association(in_half) for in_half in halves]
    shapes = [a.shapes(params.shapes, params.min_z) for a in by_half]
    everywhere = bins.association()
    pool = np.empty(0, np.int64)
    pairs: list[list[BasisColumn]] = [[] for _ in halves]
    if params.pairs and params.members and matrix.shape[1] > 1:
        # members: the all-pairs scan's, and the most heteroscedastic features (Var(y | x) grows
        # with |x| for a member of a product or a gate's x); each half pairs them on its own rows
        pool = np.union1d(product_scan(matrix, rows, targets, params.members), everywhere.members(params.members))
        # each horizon's target and their consensus: a pair whose effect fades with the horizon
        # is plain at the short ones and diluted in the consensus (73% of halves chose a planted
        # product on the consensus alone, 85% with every horizon's target beside it)
        labels = np.concatenate([targets, consensus_target(targets, rows)], axis=1)
        sums = block_pair_sums(matrix, blocks, labels, pool, step)
        total = sums.over(np.ones(len(blocks), dtype=bool))
        pairs = []
        for first in halves[::2]:  # complementary_halves: each first half, then its complement
            moments = sums.over(first)
            pairs += [moments.pairs(params.pairs, params.min_z), (total - moments).pairs(params.pairs, params.min_z)]
    union = kept_columns(shapes, UNION_FACTOR * params.shapes)
    union |= {key: len(union) + k for key, k in kept_columns(pairs, UNION_FACTOR * params.pairs).items()}
    columns = [BasisColumn(shape, feature, partner) for shape, feature, partner in union]
    allowed = []
    for shape_columns, pair_columns in zip(shapes, pairs, strict=True):
        mask = np.zeros(len(columns), dtype=bool)
        keys = [(c.shape, c.feature, c.partner) for c in (*shape_columns, *pair_columns)]
        mask[[union[key] for key in keys if key in union]] = True
        allowed.append(mask)
    return NonlinearBasis(columns, basis_values(matrix, columns, rows), allowed, everywhere)
