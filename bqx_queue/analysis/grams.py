"""Per-block Gram matrices of the prepared features, read one row at a time.

Stability selection fits LAR on 2B half-samples x 7 horizons. LAR reads the Gram only through
the rows of the features it lets in (q of p), so no half-sample's Gram is ever formed: each
block's X_b'X_b is computed once and a half-sample's row is the sum of its blocks' rows,
gathered when LAR asks. The blocks are kept as full symmetric matrices (a row is one
contiguous read) when they fit the memory budget, else packed (one triangle, half the memory;
half of each row is then a strided gather, about 20x slower to read).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import ssyrk

from bqx_queue.analysis.spill import SpilledMatrix

FLOAT32_BYTES = 4
PANEL_COLUMNS = 512  # packed Grams are built a panel of columns at a time
TILE = 512  # full Grams are mirrored tile by tile


def gram_bytes(features: int, blocks: int, packed: bool) -> int:
    """Return the memory the block Grams of `features` columns take."""
    per_block = features * (features + 1) // 2 if packed else features * features
    return blocks * per_block * FLOAT32_BYTES


def _block_view(matrix: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Return a block's rows: a view when they are contiguous (the usual case), else a copy."""
    start, stop = int(block[0]), int(block[-1]) + 1
    return matrix[start:stop] if stop - start == len(block) else matrix[block]


def _rows_of(matrix: np.ndarray | SpilledMatrix, block: np.ndarray, columns: np.ndarray | None) -> np.ndarray:
    """Return a block's rows of the given columns as a column-major array (what BLAS reads)."""
    if isinstance(matrix, SpilledMatrix):
        start, stop = int(block[0]), int(block[-1]) + 1
        part = matrix.rows(start, stop, columns)
        return part if stop - start == len(block) else np.asfortranarray(part[block - start])
    rows = _block_view(matrix, block)
    return np.asfortranarray(rows if columns is None else rows[:, columns])


def block_crosses(
    matrix: np.ndarray, blocks: list[np.ndarray], targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-block X'y of every column (targets, blocks, columns), per-block target sums
    (targets, blocks) and per-block column sums (blocks, columns), for `targets` (rows, k)
    given on every row of the matrix: one pass over the matrix for all targets."""
    xy = np.empty((targets.shape[1], len(blocks), matrix.shape[1]))
    ysum = np.empty((targets.shape[1], len(blocks)))
    column_sums = np.empty((len(blocks), matrix.shape[1]))
    for index, block in enumerate(blocks):
        rows = _block_view(matrix, block)
        xy[:, index, :] = (rows.T @ targets[block].astype(np.float32)).T
        ysum[:, index] = targets[block].sum(axis=0)
        column_sums[index] = rows.sum(axis=0, dtype=np.float64)
    return xy, ysum, column_sums


class BlockGrams:
    """Per-block sums and X'X of `matrix[:, columns]` beside the `extra` columns (the nonlinear
    basis, analysis/basis.py: rows as the matrix's), shared by every horizon.

    Full: `full[b, j]` is row j of block b's Gram. Packed: element (i, j), i <= j, of block b's
    Gram is `packed[b, start[j] + i]` (column j's upper part is contiguous).
    """

    def __init__(
        self,
        matrix: np.ndarray | SpilledMatrix,
        blocks: list[np.ndarray],
        columns: np.ndarray | None = None,
        packed: bool = False,
        extra: np.ndarray | None = None,
    ) -> None:
        self.blocks = blocks
        self.columns = np.arange(matrix.shape[1]) if columns is None else np.asarray(columns)
        self.is_packed = packed
        p = len(self.columns) + (0 if extra is None else extra.shape[1])
        subset = None if columns is None else self.columns
        self.counts = np.array([len(b) for b in blocks], dtype=np.float64)
        self.sums = np.empty((len(blocks), p))
        self.start = np.arange(p, dtype=np.int64) * np.arange(1, p + 1, dtype=np.int64) // 2
        if packed:
            self.grams = np.empty((len(blocks), p * (p + 1) // 2), dtype=np.float32)
        else:
            self.grams = np.empty((len(blocks), p, p), dtype=np.float32)
        for index, block in enumerate(blocks):
            part = _rows_of(matrix, block, subset)
            if extra is not None and extra.shape[1]:
                part = np.asfortranarray(np.hstack([part, extra[block]]))
            self.sums[index] = part.sum(axis=0, dtype=np.float64)
            if packed:
                self._fill_packed(index, part)
            else:
                self._fill_full(index, part)
            del part
        diagonal = np.arange(p)
        if packed:
            self.diagonals = self.grams[:, self.start + diagonal].astype(np.float64)
        else:
            self.diagonals = self.grams[:, diagonal, diagonal].astype(np.float64)

    @property
    def features(self) -> int:
        return len(self.start)

    def _fill_full(self, index: int, part: np.ndarray) -> None:
        gram = self.grams[index]
        # BLAS fills the upper triangle of the column-major view, i.e. this C-order slab's
        # lower triangle; mirror it so that every row is contiguous
        written = ssyrk(1.0, part, trans=1, lower=0, c=gram.T, overwrite_c=1)
        assert np.shares_memory(written, gram)
        p = gram.shape[0]
        for i in range(0, p, TILE):
            for j in range(i + TILE, p, TILE):
                gram[i : i + TILE, j : j + TILE] = gram[j : j + TILE, i : i + TILE].T
            block = gram[i : i + TILE, i : i + TILE]
            upper = np.triu_indices(block.shape[0], 1)
            block[upper] = block.T[upper]

    def _fill_packed(self, index: int, part: np.ndarray) -> None:
        packed = self.grams[index]
        p = part.shape[1]
        for first in range(0, p, PANEL_COLUMNS):
            last = min(p, first + PANEL_COLUMNS)
            panel = part[:, :last].T @ part[:, first:last]  # rows 0..last of these columns
            for j in range(first, last):
                packed[self.start[j] : self.start[j] + j + 1] = panel[: j + 1, j - first]

    def half_rows(self, j: int, blocks: np.ndarray) -> np.ndarray:
        """Return row j of the Grams of the given blocks, (len(blocks), p) float32."""
        if not self.is_packed:
            return self.grams[blocks, j, :]
        index = np.concatenate([self.start[j] + np.arange(j + 1), self.start[j + 1 :] + j])
        return self.grams[np.ix_(blocks, index)]


class HalfGram:
    """The correlation-scale Gram of one half-sample's reweighted, centred features, formed
    one row at a time from the block Grams of the blocks in the half."""

    def __init__(self, grams: BlockGrams, in_half: np.ndarray, weights: np.ndarray) -> None:
        self.grams = grams
        self.in_half = in_half
        self.blocks = np.flatnonzero(in_half)
        self.n = float(grams.counts[in_half].sum())
        self.sums = grams.sums[in_half].sum(axis=0)
        variance = grams.diagonals[in_half].sum(axis=0) / self.n - (self.sums / self.n) ** 2
        varies = variance > 1e-12
        self.scale = np.divide(weights, np.sqrt(variance * self.n), out=np.zeros_like(weights), where=varies)
        self.scaled_sums = self.sums * self.scale
        # the standardised diagonal: the weight squared where a feature varies, 0 where not
        self.diagonal = np.where(varies, weights**2, 0.0)
        self._rows: dict[int, np.ndarray] = {}

    def row(self, j: int) -> np.ndarray:
        """Return row j: scale_j scale (G_j - s_j s / n), float64 (cached: horizons share it)."""
        row = self._rows.get(j)
        if row is None:
            row = self.grams.half_rows(j, self.blocks).sum(axis=0, dtype=np.float64)
            row *= self.scale[j]
            row *= self.scale
            row -= self.scaled_sums[j] / self.n * self.scaled_sums
            self._rows[j] = row
        return row

    def cross(self, xy: np.ndarray, ysum: np.ndarray) -> np.ndarray:
        """Return the standardised X'y of the half from per-block X'y and y sums."""
        return (xy[self.in_half].sum(axis=0) - self.sums * ysum[self.in_half].sum() / self.n) * self.scale
