"""A run as a self-contained ONNX model: raw pixels in, probabilities out.

The graph takes ``pixels``, float32 of shape (N, 28, 28) holding raw 0..255 grey levels
(bright ink on black, as MNIST and ``imageprep.prepare`` give them), and returns
``probabilities``, float32 (N, n_classes). Everything between is inside the model, in inference
form: the run's normalization ``(x - mean) / std``, then the network walk's layers
(``mnistlab.engines.arch``): the conv blocks (conv 'same', 2x2 max-pool, relu, flattened in the
(h, w, c) order the dense kernel was trained on), the Dense layers with batch norm folded into
their weights from its moving statistics, no dropout (it is an identity at inference), and the
softmax. So any ONNX runtime predicts like
``Run.predict_proba`` without mnistlab. ``calibrated=True`` (``--calibrated``) divides the
logits by the temperature of the run's calibration.json before the softmax, so the
probabilities are the calibrated ones ``predict --calibrated`` gives; the model's metadata says
which (``probabilities``: "raw softmax" or "calibrated", and ``temperature``).

The graph is written with ``onnx.helper`` from the run's Keras-named weights: no torch import,
no tracing. The class names, dataset and normalization travel in the model's metadata.

>>> path = export_onnx("runs/my-run")                     # doctest: +SKIP
>>> import onnxruntime as ort, numpy as np                # doctest: +SKIP
>>> s = ort.InferenceSession(str(path))                   # doctest: +SKIP
>>> s.run(None, {"pixels": np.zeros((1, 28, 28), np.float32)})[0].shape   # doctest: +SKIP
(1, 10)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnistlab.engines.arch import Layer, Network, network
from mnistlab.errors import MnistlabError
from mnistlab.fsio import atomic_write_bytes
from mnistlab.rundir import ONNX, Run, load_run
from mnistlab.rundir.calibration import read_calibration

FORMATS = ("onnx",)
OPSET = 17
IR_VERSION = 8  # the oldest that carries opset 17: readable by every runtime that runs it
BN_EPSILON = 1e-3  # Keras' BatchNormalization default, as the engines use it
INPUT, OUTPUT = "pixels", "probabilities"


class ExportError(MnistlabError):
    """The run cannot be exported as asked (format, missing extra, unsupported network)."""


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ExportError(
            "ONNX export needs the 'onnx' package: install the export extra, "
            "pip install 'mnistlab[export]'"
        ) from None
    return onnx, helper, numpy_helper


class _Graph:
    """A small builder: constants as initializers, nodes appended in order, fresh names."""

    def __init__(self, helper, numpy_helper, temperature: float | None = None):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.n = [], [], 0
        self.temperature = temperature  # the softmax divides the logits by it first

    def const(self, name: str, value) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        self.n += 1
        out = f"{kind.lower()}_{self.n}"
        self.nodes.append(self.helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out


def _activation(g: _Graph, name: str, x: str) -> str:
    if name == "relu":
        return g.op("Relu", [x])
    if name == "tanh":
        return g.op("Tanh", [x])
    if name == "sigmoid":
        return g.op("Sigmoid", [x])
    if name == "softmax":
        if g.temperature is not None:
            x = g.op("Div", [x, g.const("temperature", np.array(g.temperature, np.float32))])
        g.nodes.append(g.helper.make_node("Softmax", [x], [OUTPUT], name="softmax", axis=-1))
        return OUTPUT
    if name == "gelu":  # exact erf form
        inv_sqrt2 = g.const(f"inv_sqrt2_{g.n}", np.array(1 / np.sqrt(2), np.float32))
        half = g.const(f"half_{g.n}", np.array(0.5, np.float32))
        one = g.const(f"one_{g.n}", np.array(1.0, np.float32))
        erf = g.op("Erf", [g.op("Mul", [x, inv_sqrt2])])
        return g.op("Mul", [g.op("Mul", [x, half]), g.op("Add", [erf, one])])
    raise ExportError(f"activation {name!r} has no ONNX export")


def _conv(g: _Graph, w: dict[str, np.ndarray], layer: Layer, x: str) -> str:
    if layer.index == 0:  # the first conv reads the (N, side, side) pixels as NCHW
        side = layer.shape[0]
        x = g.op("Reshape", [x, g.const("shape_nchw", np.array([-1, 1, side, side], np.int64))])
    kh, kw = layer.weights[0].shape[:2]  # HWIO
    # 'same' padding as torch and Keras place it: the odd pixel goes bottom/right.
    pads = [(kh - 1) // 2, (kw - 1) // 2, kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2]
    kernel = g.const(f"{layer.name}.weight", w[f"{layer.name}.kernel"].transpose(3, 2, 0, 1))
    bias = g.const(f"{layer.name}.bias", w[f"{layer.name}.bias"])
    return g.op("Conv", [x, kernel, bias], kernel_shape=[kh, kw], pads=pads)


def _dense(g: _Graph, w: dict[str, np.ndarray], layer: Layer, bn: Layer | None, x: str) -> str:
    kernel = w[f"{layer.name}.kernel"].astype(np.float64)
    bias = w[f"{layer.name}.bias"].astype(np.float64)
    if bn is not None:
        # Inference-form batch norm is an affine map per unit: fold it into the kernel.
        p = {v.role: w[v.name].astype(np.float64) for v in bn.weights}
        scale = p["gamma"] / np.sqrt(p["moving_variance"] + BN_EPSILON)
        bias = (bias - p["moving_mean"]) * scale + p["beta"]
        kernel = kernel * scale[None, :]
    kernel_name = g.const(f"{layer.name}.kernel", kernel.astype(np.float32))
    return g.op("Gemm", [x, kernel_name, g.const(f"{layer.name}.bias", bias.astype(np.float32))])


def _layers(g: _Graph, net: Network, w: dict[str, np.ndarray], x: str) -> str:
    """The network walk's layers as nodes, in inference form (no dropout, batch norm folded)."""
    for layer in net.layers:
        if layer.kind == "conv":
            x = _conv(g, w, layer, x)
        elif layer.kind == "max_pool":
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        elif layer.kind == "activation":
            x = _activation(g, layer.fn, x)
        elif layer.kind == "flatten":
            if net.of("conv"):  # the dense kernel was trained on a channels-last flatten
                x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
            x = g.op("Reshape", [x, g.const("shape_flat", np.array([-1, layer.width], np.int64))])
        elif layer.kind == "dense":
            x = _dense(g, w, layer, net.block(layer).get("batch_norm"), x)
        elif layer.kind not in ("batch_norm", "dropout"):  # folded above; identity
            raise ExportError(f"layer {layer.name!r} ({layer.kind}) has no ONNX export")
    return x


def build_onnx(
    recipe,
    weights: dict[str, np.ndarray],
    mean: float,
    std: float,
    class_names,
    dataset: str = "",
    side: int = 28,
    temperature: float | None = None,
):
    """The ``onnx.ModelProto`` of a network given as a recipe and its Keras-named weights;
    with ``temperature``, the softmax is of the logits divided by it (calibrated)."""
    onnx, helper, numpy_helper = _onnx()
    g = _Graph(helper, numpy_helper, temperature)
    w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    x = g.op("Sub", [INPUT, g.const("norm_mean", np.array(mean, np.float32))])
    # (x - mean) / std exactly as Run.preprocess does it: a division, not a folded product.
    x = g.op("Div", [x, g.const("norm_std", np.array(std, np.float32))])
    _layers(g, network(recipe, len(class_names), side), w, x)
    graph = helper.make_graph(
        g.nodes,
        f"mnistlab_{recipe.kind}",
        [helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["N", side, side])],
        [helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["N", len(class_names)])],
        g.inits,
    )
    model = helper.make_model(
        graph, producer_name="mnistlab", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = IR_VERSION
    model.doc_string = (
        f"{INPUT}: float32 (N, {side}, {side}) raw 0-255 grey levels, bright ink "
        f"on black; {OUTPUT}: float32 (N, {len(class_names)}) softmax"
    )
    helper.set_model_props(
        model,
        {
            "class_names": json.dumps(list(class_names)),
            "dataset": dataset,
            "normalization.mean": repr(float(mean)),
            "normalization.std": repr(float(std)),
            "recipe": json.dumps(recipe.to_dict()),
            "probabilities": "raw softmax" if temperature is None else "calibrated",
            "temperature": "" if temperature is None else repr(float(temperature)),
        },
    )
    onnx.checker.check_model(model)
    return model


def export_onnx(run, out: str | Path | None = None, calibrated: bool = False) -> Path:
    """Write the run's model as ONNX to ``out`` (default ``<run>/model.onnx``); returns the path.
    ``calibrated``: with the temperature of the run's calibration.json (RunError without one)."""

    _onnx()  # a missing extra is the first thing to say, before reading the run
    run = run if isinstance(run, Run) else load_run(run)
    run.finite_proba(np.zeros((1, 28, 28), np.uint8), before="exporting")
    temperature = read_calibration(run).temperature if calibrated else None
    path = Path(out) if out is not None else Path(run.path) / ONNX
    model = build_onnx(
        run.recipe,
        run.weights,
        run.mean,
        run.std,
        run.class_names,
        run.dataset_name,
        temperature=temperature,
    )
    atomic_write_bytes(path, model.SerializeToString())
    return path


def export(
    run, format: str = "onnx", out: str | Path | None = None, calibrated: bool = False
) -> Path:
    """Export a run (folder or Run) in ``format``; only "onnx" for now. ``calibrated``: its
    probabilities temperature-scaled with the run's calibration.json."""
    if format not in FORMATS:
        raise ExportError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    return export_onnx(run, out, calibrated)
