"""Gallery figures from nearest neighbours, never an n x n matrix: each face (a random sample of
MAX_PROBES on large galleries) against all the others, in chunks. Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerec_pipeline.core.gallery.open_set import CHUNK_CELLS, sample_probes

MAX_PROBES = 10_000


@dataclass(frozen=True)
class Neighbours:
    """Per probe face: its nearest face of the same person (inf when it has none) and its
    nearest face of anyone else (inf when the gallery holds one person)."""

    probes: np.ndarray  # row numbers
    same: np.ndarray
    other: np.ndarray


def nearest_neighbours(
    vectors: np.ndarray, labels: list[str], max_probes: int = MAX_PROBES, seed: int = 0
) -> Neighbours:
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    probes = sample_probes(len(vectors), max_probes, seed)
    same, other = [], []
    step = max(1, CHUNK_CELLS // max(len(vectors), 1))
    for begin in range(0, len(probes), step):
        chunk = probes[begin : begin + step]
        distances = 1.0 - vectors[chunk] @ vectors.T
        distances[np.arange(len(chunk)), chunk] = np.inf
        is_same = codes[chunk][:, None] == codes[None, :]
        same.append(np.where(is_same, distances, np.inf).min(axis=1))
        other.append(np.where(is_same, np.inf, distances).min(axis=1))
    empty = np.zeros(0)
    return Neighbours(
        probes, np.concatenate(same) if same else empty, np.concatenate(other) if other else empty
    )


def evaluate(vectors: np.ndarray, labels: list[str], max_probes: int = MAX_PROBES) -> dict:
    """Leave-one-out top-1 (is a face's nearest other face of its own person?) and the nearest
    genuine and impostor distances, over faces whose person has another face."""
    figures: dict = {"faces": len(labels), "people": int(len(set(labels)))}
    if len(labels) < 2:
        return figures
    found = nearest_neighbours(vectors, labels, max_probes)
    counted = np.isfinite(found.same)
    if counted.any():
        figures["loo_probes"] = int(counted.sum())
        figures["loo_top1_accuracy"] = round(
            float((found.same[counted] < found.other[counted]).mean()), 4
        )
        figures["genuine_distance_mean"] = round(float(found.same[counted].mean()), 4)
        figures["genuine_distance_max"] = round(float(found.same[counted].max()), 4)
    impostor = found.other[np.isfinite(found.other)]
    if len(impostor):
        figures["impostor_distance_min"] = round(float(impostor.min()), 4)
        figures["impostor_distance_mean"] = round(float(impostor.mean()), 4)
    if len(found.probes) < len(labels):
        figures["sampled_probes"] = int(len(found.probes))
    return figures
