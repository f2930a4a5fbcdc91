"""dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1.dat, the weights DeepFace's
`Dlib` model loads) run with NumPy: the same weights and arithmetic as dlib's
`face_recognition_model_v1.compute_face_descriptor`, but on BLAS matrix products and batched.
dlib-bin's build has no BLAS; this runs several times faster on the same CPU (bench/run.py) and
agrees with dlib to float32 rounding (facerec_pipeline_tests/test_dlib_resnet.py).

The weights are read from dlib's own serialization of the network (dlib/dnn/*.h, version 19.24):
a stream of layer records, innermost first, each opening with its version string. The network is
the one in dlib's examples/dnn_face_recognition_ex.cpp:

    input 150x150 RGB -> con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2
    -> 3 residual blocks of 32 -> 4 of 64 (first one down) -> 3 of 128 (first down)
    -> 3 of 256 (first down) -> 1 of 256 (down) -> global average -> fc 128 (no bias)

A residual block is x + affine(con3x3(relu(affine(con3x3(x))))), then relu; a down block strides
its first convolution by 2 and adds avg_pool 2x2/2 of x instead of x, zero-padding channels and
rows where the two sides differ in size (dlib's add_prev).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class WeightsFormatError(ValueError):
    """The file is not the dlib face recognition network this module knows."""


class _Reader:
    """dlib's serialization primitives (dlib/serialize.h, dlib/cuda/tensor.h)."""

    def __init__(self, data: bytes, position: int = 0):
        self.data = data
        self.position = position

    def integer(self) -> int:
        control = self.data[self.position]
        size, negative = control & 0x0F, control & 0x80
        if size > 8:
            raise WeightsFormatError(f"bad integer at byte {self.position}")
        raw = self.data[self.position + 1 : self.position + 1 + size]
        self.position += 1 + size
        value = int.from_bytes(raw, "little")
        return -value if negative else value

    def floating(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return float(mantissa) * 2.0**exponent

    def string(self) -> str:
        length = self.integer()
        text = self.data[self.position : self.position + length].decode("ascii")
        self.position += length
        return text

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise WeightsFormatError(f"unknown tensor version at byte {self.position}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        end = self.position + 4 * count
        if end > len(self.data):
            raise WeightsFormatError("the file ends inside a tensor (truncated?)")
        values = np.frombuffer(self.data[self.position : end], dtype="<f4")
        self.position = end
        return values.reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        if self.integer() != 1:
            raise WeightsFormatError(f"unknown alias_tensor version at byte {self.position}")
        return tuple(self.integer() for _ in range(4))


@dataclass
class _Conv:
    weights: np.ndarray  # (kh * kw * channels, filters), rows in (kh, kw, channel) order
    bias: np.ndarray
    size: int
    stride: int
    padding: int


@dataclass
class _Affine:
    gamma: np.ndarray
    beta: np.ndarray


def _read_conv(reader: _Reader) -> _Conv:
    params = reader.tensor().ravel()
    filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    padding_y, padding_x = reader.integer(), reader.integer()
    shape = reader.alias()
    reader.alias()  # biases: the rest of params
    for _ in range(4):
        reader.floating()  # learning rate and weight decay multipliers
    if rows != cols or stride_y != stride_x or padding_y != padding_x or shape[0] != filters:
        raise WeightsFormatError("unexpected convolution shape")
    size = int(np.prod(shape))
    kernels = params[:size].reshape(shape)  # (filters, channels, kh, kw)
    weights = kernels.transpose(2, 3, 1, 0).reshape(-1, filters)
    return _Conv(np.ascontiguousarray(weights), params[size:].copy(), rows, stride_y, padding_y)


def _read_affine(reader: _Reader) -> _Affine:
    params = reader.tensor().ravel()
    gamma_shape = reader.alias()
    reader.alias()
    reader.integer()  # mode
    count = int(np.prod(gamma_shape))
    return _Affine(params[:count].copy(), params[count:].copy())


def _read_pool(reader: _Reader) -> tuple[int, int, int]:
    rows, cols = reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    padding_y, padding_x = reader.integer(), reader.integer()
    if rows != cols or stride_y != stride_x or padding_y != padding_x or padding_y != 0:
        raise WeightsFormatError("unexpected pooling shape")
    return rows, stride_y, padding_y


def _records(data: bytes) -> list[tuple[str, object]]:
    """Layer records in forward order, found by their version strings."""
    names = (
        b"input_rgb_image_sized",
        b"con_4",
        b"affine_",
        b"relu_",
        b"max_pool_2",
        b"avg_pool_2",
        b"add_prev_",
        b"fc_2",
        b"loss_metric_2",
    )
    found = []
    for name in names:
        marker = bytes([1, len(name)]) + name
        start = data.find(marker)
        while start != -1:
            found.append((start, name.decode()))
            start = data.find(marker, start + 1)
    records = []
    for start, name in sorted(found):
        reader = _Reader(data, start)
        reader.string()
        if name == "input_rgb_image_sized":
            means = (reader.floating(), reader.floating(), reader.floating())
            records.append((name, np.asarray(means, dtype=np.float32)))
        elif name == "con_4":
            records.append((name, _read_conv(reader)))
        elif name == "affine_":
            records.append((name, _read_affine(reader)))
        elif name in ("max_pool_2", "avg_pool_2"):
            records.append((name, _read_pool(reader)))
        elif name == "fc_2":
            outputs, inputs = reader.integer(), reader.integer()
            params = reader.tensor().ravel()
            records.append((name, params[: inputs * outputs].reshape(inputs, outputs).copy()))
        elif name != "loss_metric_2":
            records.append((name, None))
    return records


def _windows(x: np.ndarray, size: int, stride: int, padding: int) -> np.ndarray:
    """(n, out_h, out_w, size, size, c) views of x (n, h, w, c)."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    view = sliding_window_view(x, (size, size), axis=(1, 2))  # (n, oh, ow, c, size, size)
    return view[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)


def _conv(x: np.ndarray, conv: _Conv) -> np.ndarray:
    patches = _windows(x, conv.size, conv.stride, conv.padding)
    n, out_h, out_w = patches.shape[:3]
    columns = patches.reshape(n * out_h * out_w, -1)
    out = columns @ conv.weights
    out += conv.bias
    return out.reshape(n, out_h, out_w, -1)


def _pool(x: np.ndarray, size: int, stride: int, reduce) -> np.ndarray:
    return reduce(_windows(x, size, stride, 0), axis=(3, 4))


def _add_prev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's add_prev: the sum over the larger shape, each side zero outside its own."""
    shape = tuple(max(i, j) for i, j in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, dtype=np.float32)
    out[tuple(slice(0, s) for s in a.shape)] += a
    out[tuple(slice(0, s) for s in b.shape)] += b
    return out


class DlibFaceResNet:
    """compute_face_descriptor(batch of 150x150 RGB uint8 chips) -> 128-d descriptors."""

    CHIP = 150

    def __init__(self, weights: Path):
        try:
            records = _records(Path(weights).read_bytes())
        except WeightsFormatError as error:
            raise WeightsFormatError(f"{weights}: {error}") from error
        except (IndexError, ValueError) as error:  # cut off inside a record
            raise WeightsFormatError(f"{weights} is damaged: {error}") from error
        kinds = [name for name, _ in records]
        stem = ["input_rgb_image_sized", "con_4", "affine_", "relu_", "max_pool_2"]
        block = ["con_4", "affine_", "relu_", "con_4", "affine_", "add_prev_", "relu_"]
        expected = stem + block * 3
        if kinds[: len(expected)] != expected or kinds[-2:] != ["avg_pool_2", "fc_2"]:
            raise WeightsFormatError(f"{weights} is not dlib's face recognition ResNet")
        self.means = records[0][1]
        self.stem = (records[1][1], records[2][1], records[4][1])
        self.blocks: list[tuple[_Conv, _Affine, _Conv, _Affine, bool]] = []
        position = 5
        while kinds[position] == "con_4":
            first, first_affine, _, second, second_affine = (
                r for _, r in records[position : position + 5]
            )
            down = kinds[position + 5] == "avg_pool_2"
            if down != (first.stride == 2):
                raise WeightsFormatError("a down block must stride its first convolution")
            self.blocks.append((first, first_affine, second, second_affine, down))
            position += 8 if down else 7
        if kinds[position:] != ["avg_pool_2", "fc_2"] or len(self.blocks) != 14:
            raise WeightsFormatError(f"{weights}: unexpected layers {kinds[position:]}")
        self.fc = records[-1][1]

    def compute_face_descriptor(self, chips) -> list[np.ndarray]:
        batch = np.asarray(chips)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.shape[1:] != (self.CHIP, self.CHIP, 3):
            raise ValueError(f"face chips must be {self.CHIP}x{self.CHIP} RGB, got {batch.shape}")
        x = (batch.astype(np.float32) - self.means) / np.float32(256.0)
        conv, affine, (pool_size, pool_stride, _) = self.stem
        x = np.maximum(_conv(x, conv) * affine.gamma + affine.beta, 0)
        x = _pool(x, pool_size, pool_stride, np.max)
        for first, first_affine, second, second_affine, down in self.blocks:
            y = np.maximum(_conv(x, first) * first_affine.gamma + first_affine.beta, 0)
            y = _conv(y, second) * second_affine.gamma + second_affine.beta
            shortcut = _pool(x, 2, 2, np.mean) if down else x
            x = np.maximum(_add_prev(y, shortcut), 0)
        features = x.mean(axis=(1, 2))
        return list((features @ self.fc).astype(np.float64))
