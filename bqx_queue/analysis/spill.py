"""The prepared matrix on local disk while selection holds the block Grams in memory.

Selection needs the matrix only to build the block Grams; the models afterwards read a few
stable columns. Writing it once to a scratch file (column-major, as it is in memory) frees its
memory for the Grams: at 80,000 x 17,000 float32 that is 5.4 GB. Reads go through short-lived
memory maps, so only the pages being read count against the pair's resident memory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

WRITE_COLUMNS = 256  # columns copied and written at a time


class SpilledMatrix:
    """A float32 column-major matrix in a scratch file that is removed on close."""

    def __init__(self, matrix: np.ndarray, directory: Path | str | None = None) -> None:
        if matrix.dtype != np.float32:
            raise ValueError("spill expects a float32 matrix")
        self.shape = matrix.shape
        handle = tempfile.NamedTemporaryFile(prefix="bqx-matrix-", suffix=".f32", dir=directory, delete=False)
        self.path = Path(handle.name)
        try:
            with handle:
                for first in range(0, matrix.shape[1], WRITE_COLUMNS):
                    # a column-major chunk's transpose is row-major: its bytes are the file's
                    np.asfortranarray(matrix[:, first : first + WRITE_COLUMNS]).T.tofile(handle)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise

    def __enter__(self) -> SpilledMatrix:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def mapped(self) -> np.memmap:
        """Return a read-only map of the whole matrix (pages count as resident once read)."""
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=self.shape, order="F")

    def rows(self, start: int, stop: int, columns: np.ndarray | None = None) -> np.ndarray:
        """Return rows [start, stop) of the given columns as an in-memory column-major copy."""
        mapping = self.mapped()
        try:
            part = mapping[start:stop] if columns is None else mapping[start:stop, columns]
            return np.array(part, dtype=np.float32, order="F")
        finally:
            mapping._mmap.close()  # unmap now: the pages leave this process's resident set
