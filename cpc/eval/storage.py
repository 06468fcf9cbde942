"""Where extracted features are kept while a split is read: in RAM, or in memory-mapped files.

:func:`cpc.eval.features.extract_feature_sets` appends one batch of rows at a time. In RAM
(default) the chunks are concatenated at the end, for a moment twice the features' size. With
``memmap=True`` each chunk is written to an anonymous temporary file as it arrives (in
``TMPDIR``, unlinked at once, so the file goes with the last tensor that maps it, even after a
crash), and the result is a tensor over a ``numpy.memmap``: its pages live on disk and the OS
reads them in when they are used and drops them under memory pressure. A memory bank larger
than RAM can then be scored: the faiss kNN reads it in chunks (:mod:`cpc.eval.index`), the
linear probe one batch at a time.

Example:
    >>> store = FeatureStore(memmap=True)
    >>> for batch in batches:
    ...     store["encoder"].append(batch)  # (B, F) each
    >>> features = store.tensors()["encoder"]  # (N, F) float32, mapped from disk
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch


class FeatureRows:
    """Rows of one feature set ``(N, F)``, appended a chunk ``(B, F)`` at a time."""

    def __init__(self, memmap: bool = False) -> None:
        self.chunks: list[torch.Tensor] = []
        # closed in tensor(), or with this object: a file kept open across appends
        self.file = tempfile.TemporaryFile(prefix="cpc-features-") if memmap else None  # noqa: SIM115
        self.rows, self.width = 0, None

    def append(self, chunk: torch.Tensor) -> None:
        """Add ``(B, F)`` rows (stored as float32 on the CPU)."""
        if self.width is not None and chunk.shape[1:] != (self.width,):
            raise ValueError(f"rows of width {self.width} expected, got {tuple(chunk.shape)}")
        self.width, self.rows = chunk.shape[1], self.rows + len(chunk)
        chunk = chunk.detach().float().cpu()
        if self.file is None:
            self.chunks.append(chunk)
        else:
            self.file.write(chunk.contiguous().numpy().tobytes())

    def tensor(self) -> torch.Tensor:
        """All rows, ``(N, F)`` float32: in RAM, or mapped from the file (then closed: the
        mapping keeps the data)."""
        if self.file is None:
            return torch.cat(self.chunks)
        if self.rows == 0:  # nothing to map
            return torch.zeros(0, self.width or 0)
        self.file.flush()
        mapped = np.memmap(self.file, np.float32, mode="r+", shape=(self.rows, self.width))
        self.file.close()
        return torch.from_numpy(mapped)


class FeatureStore(dict):
    """``{name: FeatureRows}``, each made on first use (like a ``defaultdict``), in RAM or in
    memory-mapped temporary files (``memmap``)."""

    def __init__(self, memmap: bool = False) -> None:
        super().__init__()
        self.memmap = memmap

    def __missing__(self, name: str) -> FeatureRows:
        rows = self[name] = FeatureRows(self.memmap)
        return rows

    def tensors(self) -> dict[str, torch.Tensor]:
        """``{name: (N, F) float32 tensor}``."""
        return {name: rows.tensor() for name, rows in self.items()}
