#!/usr/bin/python3
"""Writes the int8 peer graph for the quantized-encoder benchmark: ONNX Runtime's dynamic-quantization form of a BERT graph.

Every MatMul whose second operand is a float weight initializer (K, N) becomes
    DynamicQuantizeLinear(x) -> MatMulInteger(x_u8, w_i8, x_zero_point, 0) -> Cast(float) -> Mul(x_scale * w_scale[N])
with symmetric int8 weights and one scale per output column: what onnxruntime.quantization.quantize_dynamic
writes with per_channel=True (ONNX Runtime fuses the chain into its DynamicQuantizeMatMul kernel when it loads
the graph). Embeddings (Gather), LayerNorm, attention's activation products and the pooler's Gemm stay FP32.

Usage: /usr/bin/python3 benchmarks/onnx_int8.py MODEL.onnx OUTPUT.onnx   (needs Debian's python3-onnx and numpy)
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def quantize(model: onnx.ModelProto) -> int:
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes, added, count = [], [], 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)  # (K, N)
        scale = np.abs(w).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        name = f"{node.name or node.output[0]}_int8"
        added += [
            numpy_helper.from_array(q, f"{name}_w"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}_w_scale"),
            numpy_helper.from_array(np.zeros(q.shape[1], np.int8), f"{name}_w_zero_point"),
        ]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [node.input[0]], [f"{name}_x", f"{name}_x_scale", f"{name}_x_zero_point"]),
            helper.make_node("MatMulInteger", [f"{name}_x", f"{name}_w", f"{name}_x_zero_point", f"{name}_w_zero_point"], [f"{name}_i32"]),
            helper.make_node("Cast", [f"{name}_i32"], [f"{name}_f32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{name}_x_scale", f"{name}_w_scale"], [f"{name}_scale"]),
            helper.make_node("Mul", [f"{name}_f32", f"{name}_scale"], [node.output[0]]),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    used = {i for n in graph.node for i in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model = onnx.load(sys.argv[1])
    count = quantize(model)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])
    print(f"{sys.argv[2]}: {count} MatMuls quantized to int8")


if __name__ == "__main__":
    main()
