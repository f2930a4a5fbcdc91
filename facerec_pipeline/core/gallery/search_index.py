"""Nearest-neighbour search over a gallery matrix: exact (a matrix product) for small galleries,
a faiss IVF index (inner product on L2-normalized vectors) built when a large version is written.
No Dagster here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

ANN_MIN_FACES = 50_000  # below this an exact search is already fast
NPROBE = 32


def build_ivf(matrix: np.ndarray, seed: int = 0):
    import faiss

    count, dim = matrix.shape
    lists = max(16, int(4 * math.sqrt(count)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = matrix[rng.choice(count, size=min(count, 40 * lists), replace=False)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.add(np.ascontiguousarray(matrix, dtype=np.float32))
    index.nprobe = NPROBE
    return index


def save_index(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def write_index(index, path: Path) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    save_index(index, partial)
    partial.replace(path)
    return path


def read_index(path: Path):
    import faiss

    faiss.omp_set_num_threads(1)  # one query at a time: threads only add latency
    index = faiss.read_index(str(path))
    index.nprobe = NPROBE
    return index


def nearest_rows(
    matrix: np.ndarray, index, query: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cosine distances, row numbers) of up to `count` nearest rows, nearest first."""
    if index is not None:
        scores, rows = index.search(query[None, :].astype(np.float32), count)
        keep = rows[0] >= 0
        return 1.0 - scores[0][keep], rows[0][keep]
    distances = 1.0 - matrix @ query
    count = min(count, len(distances))
    rows = (
        np.argpartition(distances, count - 1)[:count]
        if count < len(distances)
        else np.arange(len(distances))
    )
    rows = rows[np.argsort(distances[rows], kind="stable")]
    return distances[rows], rows
