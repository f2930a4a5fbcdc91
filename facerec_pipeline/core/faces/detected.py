"""A face a detector found, with the crop its model embeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DetectedFace:
    x: int
    y: int
    w: int
    h: int
    confidence: float
    crop_bgr: np.ndarray  # the face cut from the full-resolution image as its model expects

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def size(self) -> int:
        return min(self.w, self.h)
