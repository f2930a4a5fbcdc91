"""Gallery figures: leave-one-out top-1 accuracy and genuine/impostor distances. Pure numpy."""

from __future__ import annotations

import numpy as np


def evaluate(vectors: np.ndarray, labels: list[str], threshold: float) -> dict[str, float | int]:
    """Each face searched against all the others: does its nearest neighbour share its label, and
    is it within the threshold? Only faces whose person has another face are counted."""
    labels_array = np.asarray(labels)
    count = len(labels_array)
    figures: dict[str, float | int] = {"faces": count, "people": int(len(set(labels)))}
    if count < 2:
        return figures
    distances = 1.0 - vectors @ vectors.T
    np.fill_diagonal(distances, np.inf)
    same = labels_array[:, None] == labels_array[None, :]
    np.fill_diagonal(same, False)
    probes = np.flatnonzero(same.any(axis=1))
    if len(probes):
        nearest = distances[probes].argmin(axis=1)
        correct = labels_array[nearest] == labels_array[probes]
        within = distances[probes, nearest] <= threshold
        figures["loo_probes"] = int(len(probes))
        figures["loo_top1_accuracy"] = round(float(correct.mean()), 4)
        figures["loo_top1_accepted_accuracy"] = round(float((correct & within).mean()), 4)
    upper = np.triu_indices(count, k=1)
    genuine = distances[upper][same[upper]]
    impostor = distances[upper][~same[upper]]
    if len(genuine):
        figures["genuine_distance_mean"] = round(float(genuine.mean()), 4)
        figures["genuine_distance_max"] = round(float(genuine.max()), 4)
    if len(impostor):
        figures["impostor_distance_min"] = round(float(impostor.min()), 4)
        figures["impostor_distance_mean"] = round(float(impostor.mean()), 4)
    return figures
