"""The descriptor network's backbone (MobileNetV2's first stages, models/descriptor_numpy.py) run by
onnxruntime: the same folded convolutions, written as an ONNX graph in memory when the model
loads with `onnx.helper` (nothing is stored or downloaded), so that describing still needs no
torch.

    backbone = onnx_backbone(numpy_network)      # None when onnxruntime or onnx is missing
    features = backbone(images)                  # (B, 3, 112, 96) in [0, 1] -> (B, 7, 6, 96) NHWC

Why: numpy runs a 3x3 depthwise convolution as 9 passes over the tensor; onnxruntime's kernels
(one thread) take the backbone's forward pass from 4.8 to 1.1 CPU ms a face, two a face with
mirror averaging (the whole descriptor with emotions, batches of 16: 15.9 -> 3.3). Same
arithmetic in float32: the features agree with numpy's to ~3e-6 (tests/test_descriptor_numpy.py).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from facesearch.models.descriptor_numpy import NumpyDescriptorNet, _Conv


def backbone_graph(network: NumpyDescriptorNet) -> bytes:
    """The serialised ONNX model of `network.features`: input "images" (B, 3, 112, 96) float32
    in [0, 1], output "features" (B, 96, 7, 6) NCHW. ImportError without the `onnx` package."""
    from onnx import TensorProto, helper, numpy_helper  # here: importing onnx takes ~0.15 s

    nodes, initializers = [], []
    counter = iter(range(10_000))

    def constant(array: np.ndarray) -> str:
        name = f"c{next(counter)}"
        initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def conv(x: str, layer: _Conv) -> str:
        if layer.depthwise:  # (3, 3, C) -> (C, 1, 3, 3)
            weight = layer.weight.transpose(2, 0, 1)[:, None]
        else:                # (k*k*C, O) in (i, j, c) order -> (O, C, k, k)
            k = layer.kernel
            weight = layer.weight.reshape(k, k, -1, layer.weight.shape[1]).transpose(3, 2, 0, 1)
        pad = layer.kernel // 2
        out = f"t{next(counter)}"
        nodes.append(helper.make_node("Conv", [x, constant(weight), constant(layer.bias)], [out],
                                      kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2,
                                      pads=[pad] * 4, group=weight.shape[0] if layer.depthwise else 1))
        if not layer.relu6:
            return out
        clipped = f"t{next(counter)}"
        nodes.append(helper.make_node("Clip", [out, low, high], [clipped]))
        return clipped

    low, high = constant(np.float32(0.0)), constant(np.float32(6.0))
    centred, normalised = f"t{next(counter)}", f"t{next(counter)}"  # (images - mean) / std
    nodes.append(helper.make_node("Sub", ["images", constant(network.mean.reshape(1, 3, 1, 1))], [centred]))
    nodes.append(helper.make_node("Div", [centred, constant(network.std.reshape(1, 3, 1, 1))], [normalised]))
    x = conv(normalised, network.stem)
    for convs, residual in network.blocks:
        y = x
        for layer in convs:
            y = conv(y, layer)
        if residual:
            added = f"t{next(counter)}"
            nodes.append(helper.make_node("Add", [x, y], [added]))
            y = added
        x = y
    nodes.append(helper.make_node("Identity", [x], ["features"]))
    graph = helper.make_graph(
        nodes, "descriptor_backbone",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 112, 96])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                       ["batch", "channels", "height", "width"])],
        initializers)
    # ONNX IR version 8, default operator set 13: what onnxruntime has run this graph as since it was written
    model = helper.make_model(graph, producer_name="facesearch", ir_version=8,
                              opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


class OnnxBackbone:
    """`NumpyDescriptorNet.features` on onnxruntime (one intra-op thread: the describer runs it
    beside the photo-preparing threads, where more threads only compete for the cores). Callable
    from several threads at once."""

    def __init__(self, network: NumpyDescriptorNet):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(backbone_graph(network), sess_options=options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """images (B, 3, 112, 96) float in [0, 1] -> backbone features (B, 7, 6, 96) NHWC float32."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        return self.session.run(["features"], {"images": images})[0].transpose(0, 2, 3, 1)


_lock = threading.Lock()


def onnx_backbone(network: NumpyDescriptorNet) -> OnnxBackbone | None:
    """The network's backbone on onnxruntime, or None when onnxruntime or onnx (which writes its
    graph) is not installed (numpy then runs it)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    with _lock:
        return OnnxBackbone(network)
