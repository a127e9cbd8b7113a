"""Per-block Gram matrices of the prepared features, kept packed and read one row at a time.

Stability selection fits LAR on 2B half-samples x 7 horizons. LAR reads the Gram only through
the rows of the features it lets in (q of p), so no half-sample's Gram is ever formed: each
block's X_b'X_b is computed once (ssyrk, one triangle), stored packed (half the memory of full
matrices), and a half-sample's row is the sum of its blocks' rows, gathered when LAR asks.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import ssyrk

FLOAT32_BYTES = 4


def packed_bytes(features: int, blocks: int) -> int:
    """Return the memory the packed block Grams of `features` columns take."""
    return blocks * features * (features + 1) // 2 * FLOAT32_BYTES


def block_crosses(matrix: np.ndarray, blocks: list[np.ndarray], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-block X'y of every column, (targets, blocks, columns), and per-block target
    sums (targets, blocks), for `targets` (rows, k) given on every row of the matrix: one pass
    over the matrix for all targets."""
    xy = np.empty((targets.shape[1], len(blocks), matrix.shape[1]))
    ysum = np.empty((targets.shape[1], len(blocks)))
    for index, block in enumerate(blocks):
        contiguous = len(block) and block[-1] - block[0] + 1 == len(block)
        rows = matrix[block[0] : block[-1] + 1] if contiguous else matrix[block]
        y = targets[block].astype(np.float32)
        xy[:, index, :] = (rows.T @ y).T
        ysum[:, index] = targets[block].sum(axis=0)
    return xy, ysum


class BlockGrams:
    """Per-block sums and packed X'X of `matrix[:, columns]`, shared by every horizon.

    Element (i, j), i <= j, of block b's Gram is `packed[b, start[j] + i]`: column j's upper
    part is contiguous, as BLAS leaves it in a column-major upper triangle.
    """

    def __init__(self, matrix: np.ndarray, blocks: list[np.ndarray], columns: np.ndarray | None = None) -> None:
        self.matrix = matrix
        self.blocks = blocks
        self.columns = np.arange(matrix.shape[1]) if columns is None else np.asarray(columns)
        p = len(self.columns)
        self.start = np.arange(p, dtype=np.int64) * np.arange(1, p + 1, dtype=np.int64) // 2
        self.counts = np.array([len(b) for b in blocks], dtype=np.float64)
        self.sums = np.empty((len(blocks), p))
        self.packed = np.empty((len(blocks), p * (p + 1) // 2), dtype=np.float32)
        full = np.empty((p, p), dtype=np.float32, order="F")  # reused by every block
        for index, block in enumerate(blocks):
            part = self.block_matrix(block)
            self.sums[index] = part.sum(axis=0, dtype=np.float64)
            full = ssyrk(1.0, part, trans=1, lower=0, c=full, overwrite_c=1)
            del part
            packed = self.packed[index]
            for j in range(p):
                packed[self.start[j] : self.start[j] + j + 1] = full[: j + 1, j]
        del full
        self.diagonals = self.packed[:, self.start + np.arange(p)].astype(np.float64)
        self._rows: dict[int, np.ndarray] = {}

    @property
    def features(self) -> int:
        return len(self.columns)

    def block_matrix(self, block: np.ndarray) -> np.ndarray:
        """Return the block's rows of the selected columns, column-major (what ssyrk reads)."""
        contiguous = len(block) and block[-1] - block[0] + 1 == len(block)
        rows = self.matrix[block[0] : block[-1] + 1] if contiguous else self.matrix[block]
        if len(self.columns) == self.matrix.shape[1]:
            return np.asfortranarray(rows)
        return rows[:, self.columns]

    def cross(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return per-block X'y (blocks, p) and y sums (blocks,) of the selected columns."""
        xy, ysum = block_crosses(self.matrix, self.blocks, y[:, None])
        return xy[0][:, self.columns], ysum[0]

    def block_rows(self, j: int) -> np.ndarray:
        """Return row j of every block's Gram, (blocks, p) float32, cached until forget_rows."""
        rows = self._rows.get(j)
        if rows is None:
            index = np.concatenate([self.start[j] + np.arange(j + 1), self.start[j + 1 :] + j])
            rows = self._rows[j] = self.packed[:, index]
        return rows

    def forget_rows(self) -> None:
        """Drop cached rows (called per complementary pair: both halves share the gathers)."""
        self._rows.clear()


class HalfGram:
    """The correlation-scale Gram of one half-sample's reweighted, centred features, formed
    one row at a time from the block Grams of the blocks in the half."""

    def __init__(self, grams: BlockGrams, in_half: np.ndarray, weights: np.ndarray) -> None:
        self.grams = grams
        self.in_half = in_half
        self.n = float(grams.counts[in_half].sum())
        self.sums = grams.sums[in_half].sum(axis=0)
        variance = grams.diagonals[in_half].sum(axis=0) / self.n - (self.sums / self.n) ** 2
        self.scale = np.divide(
            weights, np.sqrt(variance * self.n), out=np.zeros_like(weights), where=variance > 1e-12
        )
        self.scaled_sums = self.sums * self.scale
        # the standardised diagonal: the weight squared where a feature varies, 0 where not
        self.diagonal = np.where(variance > 1e-12, weights**2, 0.0)
        self._rows: dict[int, np.ndarray] = {}

    def row(self, j: int) -> np.ndarray:
        """Return row j: scale_j scale (G_j - s_j s / n), float64."""
        row = self._rows.get(j)
        if row is None:
            raw = self.grams.block_rows(j)[self.in_half].sum(axis=0, dtype=np.float64)
            raw *= self.scale[j]
            raw *= self.scale
            raw -= self.scaled_sums[j] / self.n * self.scaled_sums
            row = self._rows[j] = raw
        return row

    def cross(self, xy: np.ndarray, ysum: np.ndarray) -> np.ndarray:
        """Return the standardised X'y of the half from per-block X'y and y sums."""
        return (xy[self.in_half].sum(axis=0) - self.sums * ysum[self.in_half].sum() / self.n) * self.scale
