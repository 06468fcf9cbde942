"""Where extracted features are kept while a split is read: in RAM, or in memory-mapped files.

:func:`cpc.eval.features.extract_feature_sets` appends one batch of rows at a time. In RAM
(default) they are written into one tensor of the loader's length, allocated with the first
batch (its pages take memory as rows arrive), so the features are never held twice; rows
beyond that length, or of a loader of unknown length, are kept as chunks and concatenated at
the end (for a moment twice their size). With
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
    """Rows of one feature set ``(N, F)``, appended a chunk ``(B, F)`` at a time.

    Args:
        memmap: keep the rows in a memory-mapped temporary file instead of RAM.
        capacity: the expected ``N`` (RAM only): rows go straight into one ``(capacity, F)``
            tensor, so they are never copied at the end.
    """

    def __init__(self, memmap: bool = False, capacity: int | None = None) -> None:
        self.chunks: list[torch.Tensor] = []
        # closed in tensor(), or with this object: a file kept open across appends
        self.file = tempfile.TemporaryFile(prefix="cpc-features-") if memmap else None  # noqa: SIM115
        self.capacity = None if memmap else capacity
        self.buffer: torch.Tensor | None = None  # (capacity, F), filled in order
        self.rows, self.width = 0, None

    def append(self, chunk: torch.Tensor) -> None:
        """Add ``(B, F)`` rows (stored as float32 on the CPU)."""
        if self.width is not None and chunk.shape[1:] != (self.width,):
            raise ValueError(f"rows of width {self.width} expected, got {tuple(chunk.shape)}")
        start = self.rows
        self.width, self.rows = chunk.shape[1], self.rows + len(chunk)
        chunk = chunk.detach().float().cpu()
        if self.file is not None:
            self.file.write(chunk.contiguous().numpy().tobytes())
        elif self.capacity is not None and self.rows <= self.capacity and not self.chunks:
            if self.buffer is None:
                self.buffer = torch.empty(self.capacity, self.width)
            self.buffer[start : self.rows] = chunk
        else:  # beyond the expected length: chunks from here on
            self.chunks.append(chunk)

    def tensor(self) -> torch.Tensor:
        """All rows, ``(N, F)`` float32: in RAM, or mapped from the file (then closed: the
        mapping keeps the data)."""
        if self.file is None:
            parts = self.chunks
            if self.buffer is not None:  # the rows that fit, then any beyond
                parts = [self.buffer[: self.rows - sum(len(c) for c in self.chunks)], *parts]
            if len(parts) <= 1:
                return parts[0] if parts else torch.zeros(0, self.width or 0)
            return torch.cat(parts)
        if self.rows == 0:  # nothing to map
            return torch.zeros(0, self.width or 0)
        self.file.flush()
        mapped = np.memmap(self.file, np.float32, mode="r+", shape=(self.rows, self.width))
        self.file.close()
        return torch.from_numpy(mapped)


class FeatureStore(dict):
    """``{name: FeatureRows}``, each made on first use (like a ``defaultdict``), in RAM or in
    memory-mapped temporary files (``memmap``), each expecting ``capacity`` rows if given."""

    def __init__(self, memmap: bool = False, capacity: int | None = None) -> None:
        super().__init__()
        self.memmap, self.capacity = memmap, capacity

    def __missing__(self, name: str) -> FeatureRows:
        rows = self[name] = FeatureRows(self.memmap, self.capacity)
        return rows

    def tensors(self) -> dict[str, torch.Tensor]:
        """``{name: (N, F) float32 tensor}``."""
        return {name: rows.tensor() for name, rows in self.items()}
