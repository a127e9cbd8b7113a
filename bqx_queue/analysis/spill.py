"""The prepared matrix on local disk while selection holds the block Grams in memory.

Selection needs the matrix only to build the block Grams; the models afterwards read a few
stable columns. Writing it once to a scratch file (column-major, as it is in memory) frees its
memory for the Grams: at 80,000 x 17,000 float32 that is 5.4 GB. Blocks are read into memory
column by column; the models' few columns through a memory map.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from bqx_queue.domain import BqxError

WRITE_COLUMNS = 256  # columns copied and written at a time
FLOAT32_BYTES = 4


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
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            # numpy's tofile reports a short write without an errno: ask the disk itself
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) or shutil.disk_usage(self.path.parent).free < matrix.nbytes:
                raise BqxError(
                    f"scratch disk full: {matrix.nbytes:,} bytes of the matrix did not fit in {self.path.parent} "
                    f"({exc.strerror or exc}): free space there or point scratch_dir (BQX_SCRATCH_DIR) at a larger disk"
                ) from None
            raise
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
        """Return rows [start, stop) of the given columns as an in-memory column-major copy.

        Read column by column straight into the copy (no memory map): a map's pages count as
        resident while mapped, and a fancy-indexed map plus a column-major copy held the block
        three times (1.3 GB at 17,000 features)."""
        chosen = range(self.shape[1]) if columns is None else columns
        out = np.empty((stop - start, len(chosen)), dtype=np.float32, order="F")
        length = (stop - start) * FLOAT32_BYTES
        with self.path.open("rb", buffering=0) as handle:
            descriptor = handle.fileno()
            for position, column in enumerate(chosen):
                target = out[:, position].view(np.uint8)  # contiguous: the copy is column-major
                offset = (int(column) * self.shape[0] + start) * FLOAT32_BYTES
                # an ndarray is a writable buffer; numpy's stubs do not say so before Python 3.12
                if os.preadv(descriptor, [target], offset) != length:  # type: ignore[list-item]
                    raise OSError(f"scratch file {self.path} is shorter than its matrix")
        return out
