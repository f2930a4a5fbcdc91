"""Folding an ONNX graph's quantized weights into plain float32 weights, once, at install time.

OpenCV Zoo's int8 "block-quantized" SFace stores each weight as int8 blocks with their scales and
zero points, dequantized inside the graph (`DequantizeLinear` with `block_size`, opset 21, then
`Reshape` to the layer's shape), and also declares those weights as graph inputs. OpenCV 5's
DNN engine refuses such a graph (it expects one input) and onnxruntime will not run it as
shipped either. Computing every node whose inputs are all constants (the dequantization and
reshapes) and keeping only the result as an initializer gives an ordinary float32 graph with
the same arithmetic on the image: the features match the int8 graph's (tested against ONNX's
reference evaluator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _dequantize(values: np.ndarray, scale: np.ndarray, zero: np.ndarray, attributes) -> np.ndarray:
    axis, block = attributes.get("axis", 1), attributes.get("block_size", 0)
    if block:  # each scale covers `block` consecutive values along `axis`
        scale = np.repeat(scale, block, axis=axis)
        zero = np.repeat(zero, block, axis=axis)
        within = [slice(None)] * values.ndim
        within[axis] = slice(0, values.shape[axis])
        scale, zero = scale[tuple(within)], zero[tuple(within)]
    elif scale.ndim == 1 and values.ndim > 1:  # one scale per slice along `axis`
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)


def fold_dequantized_weights(source: Path, target: Path) -> None:
    """Write `source` with its constant DequantizeLinear and Reshape nodes computed and the
    graph inputs nothing reads dropped. Deterministic: the same bytes for the same source."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = list(node.input)
        if not all(name in constants for name in inputs):
            kept.append(node)
        elif node.op_type == "DequantizeLinear":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            values, scale = constants[inputs[0]], constants[inputs[1]]
            zero = constants[inputs[2]] if len(inputs) > 2 else np.zeros_like(scale)
            constants[node.output[0]] = _dequantize(values, scale, zero, attributes)
        elif node.op_type == "Reshape":
            constants[node.output[0]] = constants[inputs[0]].reshape(constants[inputs[1]])
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input}
    outputs = {output.name for output in graph.output}
    folded = helper.make_graph(
        kept,
        graph.name,
        [value for value in graph.input if value.name in used and value.name not in constants],
        list(graph.output),
        [
            numpy_helper.from_array(constants[name], name)
            for name in sorted(used | outputs)
            if name in constants
        ],
    )
    result = helper.make_model(
        folded, opset_imports=model.opset_import, ir_version=model.ir_version
    )
    onnx.checker.check_model(result)
    onnx.save(result, str(target))
