"""
Import an ONNX model as a `.model` file of the strata model language plus its weights.

`import_onnx(path, dims)` reads an ONNX file and gives an `Imported`: the text
of one `.model` file (readable: `let` constants for the inputs' symbolic dims,
one `model` block with a `param` per weight and one statement per ONNX node
or per folded group of nodes), the weights keyed by the param names the text
uses, and the ONNX names of the outputs in the order the model returns them.
`write_import(imported, out_path)` writes `NAME.model` and
`NAME.weights.npz` beside it (what `strata run --weights` reads).

What it assumes:

- The graph is what `torch.onnx.export` (opset 13..23) produces for CNNs
  (ResNet, MobileNet), transformers (BERT, GPT-2, Llama, ViT) and the like:
  the default ONNX domain only, static shapes once every symbolic input dim
  (`dim_param`) is given a value in `dims`.
- `onnx` is installed (`onnxruntime` is not needed).

How it works:

1. Every input dim named by a `dim_param` is bound from `dims`; a missing one
   is an error naming the input, the dim and the `-D NAME=N` that gives it.
2. Constant folding to a fixpoint, with `onnx.shape_inference.infer_shapes`
   between rounds: every node whose inputs are all constant (initializers,
   `Constant` outputs, earlier folded values, `Shape`/`Size` of a value whose
   shape is static) is evaluated with `onnx.reference.ReferenceEvaluator`, so
   `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains, `Range`-based
   position ids and `Trilu`/`Equal`-built masks become constants.
   Nodes no graph output depends on are dropped.
3. Folded groups: a zero `Pad` of H and W feeding a `Conv` becomes the
   conv's padding; `Conv` followed by `BatchNormalization` (inference mode,
   the conv output used only by it) becomes one `conv2d` with folded weight
   and bias; `x * sigmoid(x)` becomes `silu(x)`; the erf form of GELU
   (`x * 0.5 * (1 + erf(x / sqrt(2)))`, both of torch's orders) becomes
   `gelu(x)`; LayerNorm and RMSNorm spelled out over the last axis
   (`ReduceMean`/`Sub`/`Pow`/`Sqrt`/`Div`, `* gamma`, `+ beta`, as exports
   before opset 17 and every Llama export write them) become `layernorm` /
   `rmsnorm`; `Where`/`Add` with a constant causal mask (lower triangle
   kept, `-inf` above, or a fill <= -1e4 feeding only a last-axis `Softmax`)
   becomes `causal_mask(x)`, which the compiler fuses into attention.
4. Every other node becomes one statement (`SUPPORTED_OPS` lists the op
   types; `_Importer.op_TYPE` translates each). Constant operands become
   `param`s (initializers keep their sanitised names, derived constants are
   named after the ONNX value they replace) or, when they hold one element
   and do not change the result's shape, literals.

Operators: Conv (1-D and 2-D; groups, strides, dilations, bias, `pads`
symmetric or not, `auto_pad`), BatchNormalization, InstanceNormalization,
LayerNormalization, RMSNormalization, LRN, Relu, LeakyRelu, PRelu, Elu,
Selu, Sigmoid, HardSigmoid, HardSwish, Tanh, Erf, Gelu (both forms), Exp,
Log, Sqrt, Abs, Neg, Reciprocal, Softplus, Softsign, Clip, Add, Sub, Mul,
Div, Pow, Max, Min, Sum (broadcasting; opset < 7 `broadcast=1` too), MatMul
(1-D operands too), Gemm, MaxPool / AveragePool (1-D and 2-D, floor mode,
no dilation; AveragePool with padding only with `count_include_pad=0`),
GlobalAveragePool, GlobalMaxPool, Flatten, Reshape, Squeeze, Unsqueeze,
Transpose, Concat, Split (equal parts as `split`, unequal as `slice`s),
Slice (constant bounds, step 1, ONNX clamping), Gather (any axis; constant
ids on a runtime tensor as `slice` when contiguous), Softmax, LogSoftmax
(opset < 13 coercion too), ReduceMean / Sum / Max / Min / SumSquare / L2,
Cast, CastLike, Constant, Identity, Dropout (inference), Where (constant
condition), Expand, Tile, Pad (constant mode), QuantizeLinear /
DequantizeLinear (per tensor or per axis, saturating; not blocked),
MatMulInteger and ConvInteger (operands of one dtype, zero points absent or
zero), plus any node that folds to a constant (Shape, Size, Range, ConstantOfShape, Equal,
Trilu, Sin, Cos, ...).

What it guarantees:

- The text parses and type-checks with `strata.compiler.frontend.compile_source`
  and, run with `weights`, computes what onnxruntime computes (up to float
  rounding; the reference evaluates float ops in f32).
- Names are identifiers (`[A-Za-z_][A-Za-z0-9_]*`), stable for a given file
  and unique; model arguments keep their ONNX names sanitised
  (`Imported.inputs` maps the ONNX input names to them).
- An operator outside the supported set, an unsupported attribute value, a
  dtype the language lacks (bool, f64, uint16 tensors that survive folding), a
  missing dim or a file that is not ONNX is a `StrataError` whose message
  starts `error: FILE: `; operator errors name the op type, the node name and
  its index in the graph. Nothing is silently dropped except nodes no output
  depends on.

Known differences from ONNX: `gather` clamps out-of-range ids, so a negative
*runtime* id (ONNX: counted from the end) reads row 0; `Where` with one
dynamic operand is `minimum(maximum(a, lo), hi)`, which gives NaN instead of
the constant where `a` is NaN; shapes in the text are specialised to the
given dims (the `let` constants name them for the inputs; changing them with
`-D` needs a re-import when reshapes depend on them).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from strata.compiler.diagnostics import StrataError, UnreadableFile, open_output, read_regular_file

__all__ = ["Imported", "import_onnx", "import_proto", "write_import", "SUPPORTED_OPS"]


@dataclass
class Imported:
    """An imported ONNX model: `.model` text, its weights, and its interface."""

    name: str
    """The model's name (the `model NAME` of the text; the file stem, sanitised)."""
    text: str
    """The `.model` file."""
    weights: dict[str, np.ndarray]
    """Every param of the text, keyed by its name."""
    outputs: list[str]
    """ONNX names of the graph outputs, in the order the model returns them."""
    inputs: dict[str, str] = field(default_factory=dict)
    """ONNX input name -> model argument name (the key `run_module` and `--inputs` use)."""


MAX_ONNX_BYTES = 2**31
"""Protobuf's own limit on one message: a bigger file is no ONNX model (and is not read whole)."""

# --------------------------------------------------------------------------- public API


def import_onnx(path: str, dims: dict[str, int] | None = None) -> Imported:
    """Read the ONNX file at `path` and translate it (see the module docstring)."""
    label = str(path)
    onnx = _need_onnx(label)
    try:
        data = read_regular_file(path, MAX_ONNX_BYTES, "ONNX model")
    except UnreadableFile as err:
        raise StrataError(f"error: {label}: cannot read it ({err.reason})") from None
    try:
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception as err:  # protobuf's DecodeError and friends
        raise StrataError(f"error: {label}: not an ONNX model ({err})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output:
        raise StrataError(f"error: {label}: not an ONNX model (no graph with outputs)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        try:
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(Path(path).parent))
        except Exception as err:
            raise StrataError(f"error: {label}: cannot read its external weights ({err})") from None
    return import_proto(model, dims or {}, label, name=_model_name(Path(path).stem, model))


def import_proto(model, dims: dict[str, int] | None = None, filename: str = "model.onnx", name: str | None = None) -> Imported:
    """Translate an in-memory `onnx.ModelProto`; errors name `filename`."""
    _need_onnx(filename)
    return _Importer(model, dict(dims or {}), filename, name or _model_name(Path(filename).stem, model)).run()


def write_import(imported: Imported, out_path: str) -> tuple[str, str]:
    """
    Write `imported` as `NAME.model` and `NAME.weights.npz` beside it.

    `out_path` is the `.model` file to write, or an existing directory (the
    file is then `DIR/NAME.model`, NAME the model's name). The weights go to
    the same path with `.model` replaced by `.weights.npz`; bf16 and f8
    weights are widened to f32, exactly (`strata run --weights` rounds them
    back). Returns the two paths.
    """
    out = Path(out_path)
    if out.is_dir():
        out = out / f"{imported.name}.model"
    stem = str(out)[: -len(".model")] if str(out).endswith(".model") else str(out)
    weights_path = stem + ".weights.npz"
    arrays = {}
    for key, value in imported.weights.items():
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":  # ml_dtypes (bf16, f8) read back only with ml_dtypes
            value = value.astype(np.float32)
        arrays[key] = value
    for target, write in ((str(out), lambda f: f.write(imported.text.encode())), (weights_path, lambda f: np.savez(f, **arrays))):
        try:
            with open_output(target, "wb") as f:
                write(f)
        except OSError as err:
            raise StrataError(f"error: cannot write {target}: {err.strerror or err}") from None
    return str(out), weights_path


# --------------------------------------------------------------------------- tables

_DTYPES = {
    1: "f32",  # FLOAT
    10: "f16",  # FLOAT16
    16: "bf16",  # BFLOAT16
    17: "f8e4m3",  # FLOAT8E4M3FN
    19: "f8e5m2",  # FLOAT8E5M2
    3: "i8",  # INT8
    2: "u8",  # UINT8
    6: "i32",  # INT32
    7: "i64",  # INT64
}
_FLOATS = {"f32", "f16", "bf16", "f8e4m3", "f8e5m2"}

_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}

def _language_words() -> frozenset[str]:
    """Names a value may not take: keywords, operations, dtypes and the special names."""
    from strata.compiler.frontend.operations import DTYPE_NAMES, OPERATIONS
    from strata.compiler.frontend.syntax import KEYWORDS

    return frozenset(KEYWORDS | set(OPERATIONS) | set(DTYPE_NAMES) | {"true", "false", "inf", "neg", "dtype"})


_LANGUAGE_WORDS = _language_words()

_INLINE_CONST_MAX = 1024
"""Constants up to this many elements stay initializers during shape inference (shape tensors)."""


def _need_onnx(label: str):
    try:
        import onnx
        import onnx.reference  # noqa: F401
        import onnx.shape_inference  # noqa: F401
    except ImportError:
        raise StrataError(f"error: {label}: importing ONNX needs the 'onnx' package (pip install onnx)") from None
    return onnx


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    s = re.sub(r"_+", "_", s).strip("_")
    s = re.sub(r"_output_0$", "", s)
    if not s:
        s = "v"
    if s[0].isdigit():
        s = "v" + s
    if s in _LANGUAGE_WORDS:
        s = s + "_"
    return s


def _model_name(stem: str, model) -> str:
    name = _sanitize(stem) if stem else ""
    if not name or name == "v":
        name = _sanitize(model.graph.name or "model")
    return name


# --------------------------------------------------------------------------- the importer


class _ImportError(Exception):
    """A problem with one node; `_Importer.run` adds the file and node."""


@dataclass(frozen=True)
class _Val:
    """A dynamic value of the text: its name there, shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class _Importer:
    def __init__(self, model, dims: dict[str, int], label: str, name: str):
        import onnx

        self.onnx = onnx
        self.label = label
        self.name = name
        self.dims = dims
        self.model = model
        if model.functions:
            try:
                from onnx import inliner

                model = inliner.inline_local_functions(model)
            except Exception as err:
                self.fail(f"cannot inline its local functions ({err})")
            self.model = model
        self.graph = model.graph
        self.opsets = {(o.domain or ""): o.version for o in model.opset_import}
        self.opsets.setdefault("", 17)
        self.opset = self.opsets.get("ai.onnx", self.opsets[""])
        # State.
        self.consts: dict[str, np.ndarray] = {}
        self.info: dict[str, tuple[tuple[int, ...] | None, int]] = {}
        self.env: dict[str, _Val] = {}
        self.used_names: set[str] = set()
        self.params: dict[object, str] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.lines: list[str] = []
        self.node_index: dict[int, int] = {}
        self.lets: dict[str, tuple[str, int]] = {}
        self.inputs: dict[str, str] = {}
        self.input_types: list[tuple[str, str]] = []
        self.infer_error: str | None = None

    # ----------------------------------------------------------------- errors

    def fail(self, message: str):
        raise StrataError(f"error: {self.label}: {message}")

    def where(self, node) -> str:
        index = self.node_index.get(id(node), "?")
        named = f" '{node.name}'" if node.name else ""
        return f"node {index}{named} ({node.op_type})"

    # ----------------------------------------------------------------- driver

    def run(self) -> Imported:
        g = self.graph
        nodes = list(g.node)
        for i, node in enumerate(nodes):
            self.node_index[id(node)] = i
        for init in g.initializer:
            self.consts[init.name] = self._to_array(init)
        # A large weight that several nodes read stays one param: folding one
        # reader (GPT-2's `transpose(wte)` beside `gather(wte, ...)`) would
        # store a second, transformed copy of it.
        readers = Counter(i for n in nodes for i in n.input if i)
        self.shared_weights = {
            name for name, value in self.consts.items() if value.size > _INLINE_CONST_MAX and readers[name] > 1
        }
        self._bind_inputs()
        nodes = self._fold(nodes)
        nodes = self._fuse_pad_conv(nodes)
        nodes = self._fuse_conv_bn(nodes)
        self.uses = Counter(i for n in nodes for i in n.input if i)
        self.uses.update(o.name for o in g.output)
        self.outputs_set = {o.name for o in g.output}
        self.consumers: dict[str, list] = {}
        for n in nodes:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.producer = {o: n for n in nodes for o in n.output if o}
        self.absorbed: set[int] = set()
        self.fused: dict[int, tuple] = {}
        """Last node of a folded group -> (op, x[, eps, gamma, beta])."""
        self._find_patterns(nodes)
        for node in nodes:
            if id(node) in self.absorbed:
                continue
            try:
                self._translate(node)
            except _ImportError as err:
                self.fail(f"{self.where(node)}: {err}")
        return self._finish()

    def _to_array(self, tensor) -> np.ndarray:
        try:
            return self.onnx.numpy_helper.to_array(tensor)
        except Exception as err:
            self.fail(f"cannot read tensor '{tensor.name}' ({err})")

    def _bind_inputs(self) -> None:
        g = self.graph
        seen_params: set[str] = set()
        for inp in g.input:
            if inp.name in self.consts:
                continue
            for d in inp.type.tensor_type.shape.dim:
                if d.HasField("dim_param"):
                    seen_params.add(d.dim_param)
        unknown = sorted(set(self.dims) - seen_params)
        if unknown:
            names = ", ".join(sorted(seen_params)) or "none"
            self.fail(f"no input dim is named '{unknown[0]}' (the inputs' symbolic dims: {names})")
        for inp in g.input:
            if inp.name in self.consts:
                continue
            if not inp.type.HasField("tensor_type"):
                self.fail(f"input '{inp.name}' is not a tensor")
            tt = inp.type.tensor_type
            dtype = _DTYPES.get(tt.elem_type)
            if dtype is None:
                self.fail(f"input '{inp.name}' has dtype {self._elem_name(tt.elem_type)}, which strata does not support")
            if not tt.HasField("shape"):
                self.fail(f"input '{inp.name}' has no shape")
            shape, text = [], []
            for k, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    shape.append(d.dim_value)
                    text.append(str(d.dim_value))
                elif d.HasField("dim_param"):
                    if d.dim_param not in self.dims:
                        self.fail(
                            f"input '{inp.name}' dim '{d.dim_param}' has no value; give -D {d.dim_param}=N"
                        )
                    value = self.dims[d.dim_param]
                    if not isinstance(value, (int, np.integer)) or value < 1:
                        self.fail(f"dim '{d.dim_param}' must be a positive integer, got {value!r}")
                    if d.dim_param not in self.lets:
                        self.lets[d.dim_param] = (self._fresh(d.dim_param), int(value))
                    shape.append(int(value))
                    text.append(self.lets[d.dim_param][0])
                elif d.HasField("dim_value"):
                    self.fail(f"input '{inp.name}' dim {k} is {d.dim_value}; strata needs positive dims")
                else:
                    self.fail(f"input '{inp.name}' dim {k} has no size and no name; fix it in the ONNX file")
            arg = self._fresh(inp.name)
            self.inputs[inp.name] = arg
            self.input_types.append((arg, f"{dtype}[{', '.join(text)}]"))
            self.env[inp.name] = _Val(arg, tuple(shape), dtype)
            self.info[inp.name] = (tuple(shape), tt.elem_type)

    @staticmethod
    def _elem_name(elem: int) -> str:
        try:
            import onnx

            return onnx.TensorProto.DataType.Name(elem).lower()
        except Exception:
            return f"type {elem}"

    # ----------------------------------------------------------------- shape inference and folding

    def _infer(self, nodes) -> None:
        onnx, helper = self.onnx, self.onnx.helper
        inputs, inits = [], []
        for name, val in self.env.items():
            inputs.append(helper.make_tensor_value_info(name, self.info[name][1], list(val.shape)))
        for name, arr in self.consts.items():
            elem = self._np_elem(arr)
            if elem is None:
                continue
            if arr.size <= _INLINE_CONST_MAX:
                try:
                    inits.append(onnx.numpy_helper.from_array(arr, name))
                    continue
                except Exception:
                    pass
            inputs.append(helper.make_tensor_value_info(name, elem, list(arr.shape)))
        produced = {o for n in nodes for o in n.output if o}
        outputs = [
            helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None)
            for o in self.graph.output
            if o.name in produced
        ]
        graph = helper.make_graph(list(nodes), "infer", inputs, outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=list(self.model.opset_import))
        m.ir_version = max(self.model.ir_version, 4)  # IR 3 ignores initializers that are not inputs
        try:
            inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=True, data_prop=True)
            self.infer_error = None
        except Exception as strict_err:
            # Non-strict inference skips what it cannot infer (an op of an
            # unknown domain, say); the strict error explains a missing shape.
            self.infer_error = str(strict_err).strip().splitlines()[0] if str(strict_err).strip() else None
            try:
                inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
            except Exception as err:
                self.fail(f"ONNX shape inference failed: {err}")
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
            if not vi.type.HasField("tensor_type"):
                continue
            tt = vi.type.tensor_type
            shape = None
            if tt.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
                if all(d is not None for d in dims):
                    shape = tuple(dims)
            if shape is None and vi.name in self.info and self.info[vi.name][0] is not None:
                continue
            self.info[vi.name] = (shape, tt.elem_type)

    def _np_elem(self, arr: np.ndarray):
        try:
            return self.onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
        except Exception:
            return None

    def _fold(self, nodes):
        from onnx.reference import ReferenceEvaluator

        for _ in range(64):
            self._infer(nodes)
            changed = False
            remaining = []
            for node in nodes:
                values = self._try_fold(node, ReferenceEvaluator)
                if values is None:
                    remaining.append(node)
                    continue
                changed = True
                for name, value in zip(node.output, values):
                    if name:
                        self.consts[name] = np.asarray(value)
            nodes = self._live(remaining)
            if not changed:
                return nodes
        return nodes

    def _try_fold(self, node, evaluator_cls):
        if node.domain not in ("", "ai.onnx") or node.op_type in _NONDETERMINISTIC:
            return None
        if any(a.type in (5, 10) for a in node.attribute):  # GRAPH, GRAPHS
            return None
        feeds = {}
        if node.op_type in ("Shape", "Size"):
            src = node.input[0]
            if src in self.consts:
                feeds[src] = self.consts[src]
            else:
                shape = self.info.get(src, (None, 0))[0]
                if shape is None:
                    return None
                feeds[src] = np.broadcast_to(np.zeros((), np.float32), shape)
        else:
            for name in node.input:
                if not name:
                    continue
                if name not in self.consts or name in self.shared_weights:
                    return None
                feeds[name] = self.consts[name]
        helper = self.onnx.helper
        try:
            # A one-node model, so the node runs at the model's opset (a bare
            # NodeProto would run at the newest one).
            inputs = [helper.make_tensor_value_info(k, self._np_elem(v) or 1, None) for k, v in feeds.items()]
            outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
            graph = helper.make_graph([node], "fold", inputs, outputs)
            model = helper.make_model(graph, opset_imports=list(self.model.opset_import))
            values = evaluator_cls(model).run(None, feeds)
        except Exception:
            return None
        if len(values) != len(node.output):
            return None
        return values

    def _live(self, nodes):
        needed = {o.name for o in self.graph.output}
        live = []
        for node in reversed(nodes):
            if any(o in needed for o in node.output if o):
                live.append(node)
                needed.update(i for i in node.input if i)
        live.reverse()
        return live

    # ----------------------------------------------------------------- folded groups

    def _zero_pad_of(self, pad, rank: int) -> list[int] | None:
        """The `[begin..., end...]` pads of a constant-zero `Pad` over spatial axes only, else None."""
        mode = self._attr(pad, "mode", "constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            return None
        if self.opset < 11:
            pads, value, axes = self._attr(pad, "pads"), self._attr(pad, "value", 0.0), list(range(rank))
        else:
            ins = list(pad.input) + [""] * (4 - len(pad.input))
            if ins[1] not in self.consts or any(i and i not in self.consts for i in ins[2:]):
                return None
            pads = [int(v) for v in self.consts[ins[1]]]
            value = float(self.consts[ins[2]].reshape(())) if ins[2] else 0.0
            axes = [int(a) for a in self.consts[ins[3]]] if ins[3] else list(range(rank))
        if value != 0.0 or pads is None or any(p < 0 for p in pads):
            return None
        full = [0] * (2 * rank)
        for i, a in enumerate(axes):
            a = a + rank if a < 0 else a
            full[a], full[a + rank] = pads[i], pads[i + len(axes)]
        if any(full[a] or full[a + rank] for a in (0, 1)):
            return None
        return full[2:rank] + full[rank + 2 :]

    def _fuse_pad_conv(self, nodes):
        """A zero `Pad` of H, W feeding only a `Conv` becomes the conv's padding."""
        uses = Counter(i for n in nodes for i in n.input if i)
        uses.update(o.name for o in self.graph.output)
        producer = {o: n for n in nodes for o in n.output if o}
        drop, replace = set(), {}
        for conv in nodes:
            if conv.op_type != "Conv" or self._attr(conv, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET", ""):
                continue
            pad = producer.get(conv.input[0])
            if pad is None or pad.op_type != "Pad" or uses[conv.input[0]] != 1 or id(pad) in drop:
                continue
            shape = self.info.get(pad.input[0], (None, 0))[0]
            if shape is None or len(shape) not in (3, 4):
                continue
            extra = self._zero_pad_of(pad, len(shape))
            if extra is None:
                continue
            n = len(shape) - 2
            old = list(self._attr(conv, "pads", [0] * (2 * n)))
            fused = self.onnx.helper.make_node("Conv", [pad.input[0]] + list(conv.input[1:]), list(conv.output), name=conv.name)
            fused.attribute.extend(a for a in conv.attribute if a.name != "pads")
            fused.attribute.append(self.onnx.helper.make_attribute("pads", [a + b for a, b in zip(old, extra)]))
            self.node_index[id(fused)] = self.node_index[id(conv)]
            replace[id(conv)] = fused
            drop.add(id(pad))
        return [replace.get(id(n), n) for n in nodes if id(n) not in drop]

    def _fuse_conv_bn(self, nodes):
        uses = Counter(i for n in nodes for i in n.input if i)
        uses.update(o.name for o in self.graph.output)
        producer = {o: n for n in nodes for o in n.output if o}
        drop, replace = set(), {}
        for bn in nodes:
            if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
                continue
            if self._attr(bn, "training_mode", 0):
                continue
            conv = producer.get(bn.input[0])
            if conv is None or conv.op_type != "Conv" or uses[bn.input[0]] != 1 or id(conv) in drop:
                continue
            if not all(i in self.consts for i in bn.input[1:5]):
                continue
            w_name = conv.input[1]
            b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
            if w_name not in self.consts or (b_name is not None and b_name not in self.consts):
                continue
            w = self.consts[w_name]
            if w.dtype.kind != "f" and str(w.dtype) != "bfloat16":
                continue
            scale, beta, mean, var = (self.consts[i].astype(np.float64) for i in bn.input[1:5])
            eps = float(self._attr(bn, "epsilon", 1e-5))
            k = scale / np.sqrt(var + eps)
            bias = self.consts[b_name].astype(np.float64) if b_name else np.zeros(w.shape[0])
            w_new = (w.astype(np.float64) * k.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            b_new = ((bias - mean) * k + beta).astype(w.dtype)
            out = bn.output[0]
            wn, bn_name = f"{out}::bn_folded_weight", f"{out}::bn_folded_bias"
            self.consts[wn], self.consts[bn_name] = w_new, b_new
            fused = self.onnx.helper.make_node(
                "Conv", [conv.input[0], wn, bn_name], [out], name=conv.name or bn.name
            )
            fused.attribute.extend(conv.attribute)
            self.node_index[id(fused)] = self.node_index[id(conv)]
            replace[id(conv)] = fused
            drop.add(id(bn))
        return [replace.get(id(n), n) for n in nodes if id(n) not in drop]

    def _single_use(self, name: str) -> bool:
        return self.uses[name] == 1 and name not in self.outputs_set

    def _scalar_const(self, name: str) -> float | None:
        arr = self.consts.get(name)
        if arr is None or arr.size != 1:
            return None
        try:
            return float(arr.reshape(()))
        except (TypeError, ValueError):
            return None

    def _other(self, node, name_pred):
        """For a two-input node: (the input satisfying `name_pred`, the other), or None."""
        a, b = node.input[0], node.input[1]
        if name_pred(a):
            return a, b
        if name_pred(b):
            return b, a
        return None

    def _is_const(self, name: str, value: float, rel: float = 1e-6) -> bool:
        v = self._scalar_const(name)
        return v is not None and abs(v - value) <= rel * abs(value)

    def _find_patterns(self, nodes) -> None:
        for node in nodes:
            if node.op_type == "Mul" and len(node.input) == 2:
                # x * sigmoid(x) -> silu(x)
                for s, x in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
                    p = self.producer.get(s)
                    if p is not None and p.op_type == "Sigmoid" and p.input[0] == x and self._single_use(s):
                        self.absorbed.add(id(p))
                        self.fused[id(node)] = ("silu", x)
                        break
            if node.op_type == "Erf":
                self._match_gelu(node)
        for node in nodes:
            if node.op_type == "ReduceMean" and id(node) not in self.absorbed:
                self._match_layernorm(node)
        for node in nodes:
            if node.op_type == "ReduceMean" and id(node) not in self.absorbed:
                self._match_rmsnorm(node)

    def _only_consumer(self, name: str, op_type: str | tuple):
        """The single consumer of `name` if it has that op type (and `name` is no graph output)."""
        if not self._single_use(name):
            return None
        (c,) = self.consumers[name]
        types = (op_type,) if isinstance(op_type, str) else op_type
        return c if c.op_type in types and id(c) not in self.absorbed else None

    def _last_axis_mean(self, node, x: str) -> bool:
        """`node` is ReduceMean(x) over the last axis, keeping dims."""
        shape = self.info.get(x, (None, 0))[0]
        if shape is None or not shape or not self._attr(node, "keepdims", 1):
            return False
        if self.has(node, 1):
            if node.input[1] not in self.consts:
                return False
            axes = [int(a) for a in self.consts[node.input[1]].reshape(-1)]
        else:
            axes = list(self._attr(node, "axes", []) or [])
        return len(axes) == 1 and axes[0] in (-1, len(shape) - 1)

    def _square_of(self, name: str) -> str | None:
        """x when `name` is Pow(x, 2) or Mul(x, x)."""
        p = self.producer.get(name)
        if p is None or id(p) in self.absorbed:
            return None
        if p.op_type == "Pow" and self._is_const(p.input[1], 2.0, 0.0):
            return p.input[0]
        if p.op_type == "Mul" and p.input[0] == p.input[1]:
            return p.input[0]
        return None

    def _rsqrt_tail(self, mean_node):
        """mean -> Add(eps) -> Sqrt: (eps, the Sqrt node, [nodes]) or None."""
        add = self._only_consumer(mean_node.output[0], "Add")
        if add is None:
            return None
        eps_name = add.input[1] if add.input[0] == mean_node.output[0] else add.input[0]
        eps = self._scalar_const(eps_name)
        if eps is None or eps < 0:
            return None
        sqrt = self._only_consumer(add.output[0], "Sqrt")
        if sqrt is None:
            return None
        return eps, sqrt, [add, sqrt]

    def _affine_tail(self, name: str, width: int):
        """Optional `* gamma` then `+ beta` (constants of shape [width]) after `name`."""
        nodes, gamma, beta, out = [], None, None, name
        mul = self._only_consumer(out, "Mul")
        if mul is not None:
            g = mul.input[1] if mul.input[0] == out else mul.input[0]
            if g in self.consts and self.consts[g].shape == (width,):
                gamma, out = g, mul.output[0]
                nodes.append(mul)
                add = self._only_consumer(out, "Add")
                if add is not None:
                    b = add.input[1] if add.input[0] == out else add.input[0]
                    if b in self.consts and self.consts[b].shape == (width,):
                        beta, out = b, add.output[0]
                        nodes.append(add)
        return gamma, beta, nodes

    def _absorb_group(self, nodes, op: str, x: str, eps: float, gamma, beta) -> None:
        *inner, last = nodes
        self.absorbed.update(id(n) for n in inner)
        self.fused[id(last)] = (op, x, eps, gamma, beta)

    def _match_layernorm(self, mean) -> None:
        """mean(x) -> x - mean -> mean(d^2) + eps -> sqrt -> d / s [* gamma [+ beta]] -> layernorm."""
        x = mean.input[0]
        if x in self.consts or not self._last_axis_mean(mean, x):
            return
        sub = self._only_consumer(mean.output[0], "Sub")
        if sub is None or sub.input[0] != x or sub.input[1] != mean.output[0]:
            return
        d = sub.output[0]
        users = self.consumers.get(d, [])
        if d in self.outputs_set or len(users) != 2 or self.uses[d] != 2:
            return
        sq = next((u for u in users if u.op_type in ("Pow", "Mul") and self._square_of(u.output[0]) == d), None)
        div = next((u for u in users if u.op_type == "Div" and u.input[0] == d), None)
        if sq is None or div is None or not self._single_use(sq.output[0]):
            return
        var = self._only_consumer(sq.output[0], "ReduceMean")
        if var is None or not self._last_axis_mean(var, sq.output[0]):
            return
        tail = self._rsqrt_tail(var)
        if tail is None or div.input[1] != tail[1].output[0]:
            return
        eps, _, tail_nodes = tail
        width = self.info[x][0][-1]
        gamma, beta, affine = self._affine_tail(div.output[0], width)
        self._absorb_group([mean, sub, sq, var, *tail_nodes, div, *affine], "layernorm", x, eps, gamma, beta)

    def _match_rmsnorm(self, mean) -> None:
        """x^2 -> mean -> + eps -> sqrt -> x / s (or x * (1 / s)) [* gamma] -> rmsnorm."""
        x = self._square_of(mean.input[0])
        if x is None or x in self.consts or not self._single_use(mean.input[0]):
            return
        if not self._last_axis_mean(mean, mean.input[0]):
            return
        tail = self._rsqrt_tail(mean)
        if tail is None:
            return
        eps, sqrt, tail_nodes = tail
        s = sqrt.output[0]
        div = self._only_consumer(s, ("Div", "Reciprocal"))
        if div is None:
            return
        if div.op_type == "Div":
            if list(div.input) != [x, s]:
                return
            body = [div]
        else:
            mul = self._only_consumer(div.output[0], "Mul")
            if mul is None or set(mul.input) != {x, div.output[0]}:
                return
            body = [div, mul]
        width = self.info[x][0][-1]
        gamma, _, affine = self._affine_tail(body[-1].output[0], width)
        affine = affine[:1]
        square = self.producer[mean.input[0]]
        self._absorb_group([square, mean, *tail_nodes, *body, *affine], "rmsnorm", x, eps, gamma, None)

    def _match_gelu(self, erf) -> None:
        div = self.producer.get(erf.input[0])
        if div is None or not self._single_use(erf.input[0]) or len(div.input) != 2:
            return
        if div.op_type == "Div" and self._is_const(div.input[1], math.sqrt(2.0)):
            x = div.input[0]
        elif div.op_type == "Mul":
            pair = self._other(div, lambda n: self._is_const(n, 1 / math.sqrt(2.0)))
            if pair is None:
                return
            x = pair[1]
        else:
            return
        if x in self.consts or not self._single_use(erf.output[0]):
            return
        (add,) = self.consumers[erf.output[0]]
        if add.op_type != "Add" or self._other(add, lambda n: self._is_const(n, 1.0)) is None:
            return
        if not self._single_use(add.output[0]):
            return
        (m1,) = self.consumers[add.output[0]]
        if m1.op_type != "Mul":
            return
        other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
        if other == x:
            if not self._single_use(m1.output[0]):
                return
            (m2,) = self.consumers[m1.output[0]]
            if m2.op_type != "Mul" or self._other(m2, lambda n: self._is_const(n, 0.5)) is None:
                return
            self.absorbed.update({id(div), id(erf), id(add), id(m1)})
            self.fused[id(m2)] = ("gelu", x)
            return
        half = self.producer.get(other)
        if half is None or half.op_type != "Mul" or not self._single_use(other):
            return
        pair = self._other(half, lambda n: self._is_const(n, 0.5))
        if pair is None or pair[1] != x:
            return
        self.absorbed.update({id(div), id(erf), id(add), id(half)})
        self.fused[id(m1)] = ("gelu", x)

    # ----------------------------------------------------------------- emission helpers

    def _fresh(self, base: str) -> str:
        name = _sanitize(base)
        candidate, k = name, 2
        while candidate in self.used_names:
            candidate = f"{name}_{k}"
            k += 1
        self.used_names.add(candidate)
        return candidate

    def _attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def _out_info(self, name: str) -> tuple[tuple[int, ...], str]:
        shape, elem = self.info.get(name, (None, 0))
        if shape is None:
            why = f" (ONNX shape inference: {self.infer_error})" if self.infer_error else ""
            raise _ImportError(f"the shape of '{name}' is not static after folding constants{why}")
        if any(d == 0 for d in shape):
            raise _ImportError(f"'{name}' has shape {list(shape)}; strata needs positive dims")
        dtype = _DTYPES.get(elem)
        if dtype is None:
            raise _ImportError(f"'{name}' has dtype {self._elem_name(elem)}, which strata does not support")
        return tuple(shape), dtype

    def bind(self, out: str, expr: str) -> _Val:
        shape, dtype = self._out_info(out)
        name = self._fresh(out)
        self.lines.append(f"  {name} = {expr}")
        val = _Val(name, shape, dtype)
        self.env[out] = val
        return val

    def temp(self, base: str, expr: str, shape, dtype) -> _Val:
        name = self._fresh(base)
        self.lines.append(f"  {name} = {expr}")
        return _Val(name, tuple(shape), dtype)

    def alias(self, out: str, val: _Val) -> None:
        self.env[out] = val

    def has(self, node, i: int) -> bool:
        return len(node.input) > i and bool(node.input[i])

    def is_dyn(self, name: str) -> bool:
        return name in self.env

    def dyn(self, name: str) -> _Val:
        if name in self.env:
            return self.env[name]
        if name in self.consts:
            return self.param(name)
        raise _ImportError(f"input '{name}' is not defined before its use")

    def const(self, name: str, what: str = "input") -> np.ndarray:
        if name not in self.consts:
            raise _ImportError(f"{what} '{name}' must be a constant (an initializer or folded value)")
        return self.consts[name]

    def param(self, onnx_name: str, array: np.ndarray | None = None, tag: str = "", dtype: str | None = None) -> _Val:
        """The const `onnx_name` (or `array` derived from it under `tag`) as a param."""
        key = (onnx_name, tag, dtype)
        arr = self.consts[onnx_name] if array is None else np.asarray(array)
        if dtype is not None:
            arr = arr.astype(_np_dtype(dtype))
        lang = self._lang_dtype(arr, onnx_name)
        if key not in self.params:
            if any(d == 0 for d in arr.shape):
                raise _ImportError(f"constant '{onnx_name}' has shape {list(arr.shape)}; strata needs positive dims")
            base = onnx_name.replace("::bn_folded_", "_bn_") + (f"_{tag}" if tag else "") + (f"_{dtype}" if dtype else "")
            pname = self._fresh(base)
            self.params[key] = pname
            self.weights[pname] = arr
            dims = ", ".join(str(d) for d in arr.shape)
            self.lines.append(f"  param {pname}: {lang}[{dims}]")
        return _Val(self.params[key], tuple(arr.shape), lang)

    def _lang_dtype(self, arr: np.ndarray, name: str) -> str:
        elem = self._np_elem(arr)
        dtype = _DTYPES.get(elem) if elem is not None else None
        if dtype is None:
            raise _ImportError(f"constant '{name}' has dtype {arr.dtype}, which strata does not support as a tensor")
        return dtype

    def literal(self, name: str, against: _Val) -> str | None:
        """`name` as a literal in arithmetic with `against`, when that is exact."""
        if name not in self.consts:
            return None
        arr = self.consts[name]
        if arr.size != 1 or arr.ndim > len(against.shape):
            return None
        value = arr.reshape(())
        if against.dtype in _FLOATS:
            f = float(value)
            if math.isnan(f):
                return None
            return _float_text(f, against.dtype)
        if arr.dtype.kind not in "iu":
            return None
        text = str(int(value))
        return f"({text})" if text.startswith("-") else text

    def operand(self, name: str, against: _Val | None, dtype: str | None = None) -> str:
        """Text for `name` in arithmetic with `against`: a literal, a param or a value."""
        if name in self.env:
            val = self.env[name]
            if dtype is not None and val.dtype != dtype:
                return f"cast({val.name}, dtype={dtype})"
            return val.name
        if against is not None:
            lit = self.literal(name, against)
            if lit is not None:
                return lit
        want = dtype or (against.dtype if against is not None else None)
        arr = self.const(name)
        if want is not None and self._lang_dtype(arr, name) != want:
            return self.param(name, dtype=want).name
        return self.param(name).name

    # ----------------------------------------------------------------- translation

    def _translate(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _ImportError(f"op type '{node.op_type}' of domain '{node.domain}' is not supported")
        if id(node) in self.fused:
            op, x, *rest = self.fused[id(node)]
            x = self.dyn(x)
            if x.dtype not in _FLOATS:
                raise _ImportError(f"{op} needs a float input, got {x.dtype}")
            if op in ("silu", "gelu"):
                self.bind(node.output[0], f"{op}({x.name})")
                return
            eps, gamma, beta = rest
            args = [x.name]
            want = x.shape[-1:]
            for name, tag in ((gamma, "gamma"), (beta, "beta")):
                if name is not None:
                    args.append(self._norm_param(name, x, want, tag))
            self.bind(node.output[0], f"{op}({', '.join(args)}, eps={_float_text(eps, 'f32')})")
            return
        handler = getattr(self, f"op_{node.op_type}", None)
        if handler is None:
            raise _ImportError(
                f"op type '{node.op_type}' is not supported by the ONNX importer"
                f" (supported: {', '.join(SUPPORTED_OPS)})"
            )
        handler(node)

    def _finish(self) -> Imported:
        outs = []
        for o in self.graph.output:
            if o.name in self.env:
                outs.append(self.env[o.name])
            elif o.name in self.consts:
                try:
                    outs.append(self.param(o.name))
                except _ImportError as err:
                    self.fail(f"output '{o.name}': {err}")
            else:
                self.fail(f"output '{o.name}' is not computed by the graph")
        types = [f"{v.dtype}[{', '.join(str(d) for d in v.shape)}]" for v in outs]
        results = types[0] if len(types) == 1 else f"({', '.join(types)})"
        header = [f"# Imported from {os.path.basename(self.label)} by strata (ONNX opset {self.opset})."]
        if self.lets:
            header.append("# Shapes in the body are specialised to these dims; re-import to change them.")
            header += [f"let {name} = {value}" for name, value in self.lets.values()]
        args = ", ".join(f"{a}: {t}" for a, t in self.input_types)
        if len(args) > 80:
            args = "\n" + ",\n".join(f"    {a}: {t}" for a, t in self.input_types) + ",\n"
        text = "\n".join(
            header
            + ["", f"model {self.name}({args}) -> {results} {{"]
            + self.lines
            + [f"  return {', '.join(v.name for v in outs)}", "}", ""]
        )
        return Imported(self.name, text, self.weights, [o.name for o in self.graph.output], self.inputs)

    # ---- elementwise

    def _unary(self, node, fn: str) -> None:
        x = self.dyn(node.input[0])
        if x.dtype not in _FLOATS:
            raise _ImportError(f"needs a float input, got {x.dtype}")
        self.bind(node.output[0], f"{fn}({x.name})")

    def op_Relu(self, node):
        x = self.dyn(node.input[0])
        if x.dtype not in _FLOATS:
            self.bind(node.output[0], f"maximum({x.name}, 0)")
        else:
            self._unary(node, "relu")

    def op_Sigmoid(self, node):
        self._unary(node, "sigmoid")

    def op_Tanh(self, node):
        self._unary(node, "tanh")

    def op_Erf(self, node):
        self._unary(node, "erf")

    def op_Exp(self, node):
        self._unary(node, "exp")

    def op_Log(self, node):
        self._unary(node, "log")

    def op_Sqrt(self, node):
        self._unary(node, "sqrt")

    def op_Abs(self, node):
        self._unary(node, "abs")

    def op_Neg(self, node):
        x = self.dyn(node.input[0])
        self.bind(node.output[0], f"-{x.name}" if x.dtype in _FLOATS else f"{x.name} * (-1)")

    def op_Reciprocal(self, node):
        x = self.dyn(node.input[0])
        self.bind(node.output[0], f"1.0 / {x.name}" if x.dtype in _FLOATS else f"1 / {x.name}")

    def op_Gelu(self, node):
        x = self.dyn(node.input[0])
        if self._attr(node, "approximate", "none") in ("none", b"none"):
            self.bind(node.output[0], f"gelu({x.name})")
            return
        c = _float_text(math.sqrt(2.0 / math.pi), x.dtype)
        self.bind(
            node.output[0],
            f"{x.name} * 0.5 * (1.0 + tanh({c} * ({x.name} + 0.044715 * {x.name} * {x.name} * {x.name})))",
        )

    def op_HardSigmoid(self, node):
        x = self.dyn(node.input[0])
        alpha = _float_text(self._attr(node, "alpha", 0.2), x.dtype)
        beta = _float_text(self._attr(node, "beta", 0.5), x.dtype)
        self.bind(node.output[0], f"minimum(maximum({x.name} * {alpha} + {beta}, 0.0), 1.0)")

    def op_HardSwish(self, node):
        x = self.dyn(node.input[0])
        sixth = _float_text(1.0 / 6.0, x.dtype)
        self.bind(node.output[0], f"{x.name} * minimum(maximum({x.name} * {sixth} + 0.5, 0.0), 1.0)")

    def op_LeakyRelu(self, node):
        x = self.dyn(node.input[0])
        alpha = float(self._attr(node, "alpha", 0.01))
        if not 0.0 <= alpha <= 1.0:
            raise _ImportError(f"alpha={alpha} outside [0, 1] is not supported")
        self.bind(node.output[0], f"maximum({x.name}, {x.name} * {_float_text(alpha, x.dtype)})")

    def op_Clip(self, node):
        x = self.dyn(node.input[0])
        if self.opset < 11:
            lo, hi = self._attr(node, "min"), self._attr(node, "max")
            lo = None if lo is None else _float_text(lo, x.dtype)
            hi = None if hi is None else _float_text(hi, x.dtype)
        else:
            lo = self.operand(node.input[1], x) if self.has(node, 1) else None
            hi = self.operand(node.input[2], x) if self.has(node, 2) else None
        expr = x.name
        if lo is not None:
            expr = f"maximum({expr}, {lo})"
        if hi is not None:
            expr = f"minimum({expr}, {hi})"
        if expr == x.name:
            self.alias(node.output[0], x)
        else:
            self.bind(node.output[0], expr)

    def _binary(self, node, a_name: str, b_name: str, sym: str) -> str:
        a = self.env.get(a_name)
        b = self.env.get(b_name)
        if a is None and b is None:  # both constant (not folded): one becomes a param
            a = self.dyn(a_name)
        dtype = (a or b).dtype
        if sym == "pow":
            dtype = self.dyn(a_name).dtype if a is not None else self._lang_dtype(self.consts[a_name], a_name)
            a_text = self.operand(a_name, b) if a is None else a.name
            b_text = self.operand(b_name, a, dtype=dtype)
            return f"pow({a_text}, {b_text})"
        a_text = self.operand(a_name, b, dtype=dtype)
        b_text = self.operand(b_name, a, dtype=dtype)
        if sym in ("maximum", "minimum"):
            return f"{sym}({a_text}, {b_text})"
        return f"{a_text} {sym} {b_text}"

    def _elementwise(self, node, sym: str) -> None:
        names = [i for i in node.input if i]
        if len(names) == 1:
            self.alias(node.output[0], self.dyn(names[0]))
            return
        if len(names) != 2:
            if sym not in ("+", "maximum", "minimum"):
                raise _ImportError(f"expects 2 inputs, got {len(names)}")
            # Variadic Sum/Max/Min: fold pairwise through temporaries.
            acc = names[0]
            for k, nxt in enumerate(names[1:-1]):
                expr = self._binary(node, acc, nxt, sym)
                shape = np.broadcast_shapes(self.dyn(acc).shape, self.dyn(nxt).shape)
                tmp = self.temp(f"{node.output[0]}_{k}", expr, shape, self.dyn(acc).dtype)
                acc = f"::tmp{id(tmp)}"
                self.env[acc] = tmp
            names = [acc, names[-1]]
        if self.opset < 7 and self._attr(node, "broadcast", 0):
            names = [names[0], self._legacy_broadcast(node, names[0], names[1])]
        shapes = [self.dyn(n).shape if n in self.env else self.consts[n].shape for n in names]
        out_shape, _ = self._out_info(node.output[0])
        try:
            numpy_shape = np.broadcast_shapes(*shapes)
        except ValueError:
            numpy_shape = None
        if numpy_shape != out_shape:
            raise _ImportError(f"operand shapes {[list(s) for s in shapes]} do not broadcast to {list(out_shape)}")
        if self._causal_add(node, sym, names):
            return
        self.bind(node.output[0], self._binary(node, names[0], names[1], sym))

    def _aligned(self, name: str, shape, axis: int, rank: int, tag: str) -> str:
        """`name` reshaped so its dims start at `axis` of a rank-`rank` operand; returns its ONNX-side key."""
        target = (1,) * axis + tuple(shape) + (1,) * (rank - axis - len(shape))
        if name in self.consts:
            key = f"{name}::{tag}"
            self.consts[key] = self.consts[name].reshape(target)
            return key
        val = self.dyn(name)
        tmp = self.temp(f"{name}_{tag}", f"reshape({val.name}, {_shape_text(target)})", target, val.dtype)
        key = f"::tmp{id(tmp)}"
        self.env[key] = tmp
        return key

    def _legacy_broadcast(self, node, a_name: str, b_name: str) -> str:
        """Opset < 7 `broadcast=1`: B's dims line up with A's from `axis`."""
        rank = len(self.dyn(a_name).shape if a_name in self.env else self.consts[a_name].shape)
        b_shape = self.dyn(b_name).shape if b_name in self.env else self.consts[b_name].shape
        axis = int(self._attr(node, "axis", rank - len(b_shape)))
        axis = axis + rank if axis < 0 else axis
        return self._aligned(b_name, b_shape, axis, rank, "aligned")

    def op_Add(self, node):
        self._elementwise(node, "+")

    def op_Sub(self, node):
        self._elementwise(node, "-")

    def op_Mul(self, node):
        self._elementwise(node, "*")

    def op_Div(self, node):
        self._elementwise(node, "/")

    def op_Pow(self, node):
        self._elementwise(node, "pow")

    def op_Max(self, node):
        self._elementwise(node, "maximum")

    def op_Min(self, node):
        self._elementwise(node, "minimum")

    def op_Sum(self, node):
        self._elementwise(node, "+")

    def op_Identity(self, node):
        self.alias(node.output[0], self.dyn(node.input[0]))

    def op_Dropout(self, node):
        if len(node.output) > 1 and node.output[1] and self.uses[node.output[1]]:
            raise _ImportError("its mask output is used; only inference-mode Dropout is supported")
        self.alias(node.output[0], self.dyn(node.input[0]))

    def op_Cast(self, node):
        x = self.dyn(node.input[0])
        to = self._attr(node, "to")
        dtype = _DTYPES.get(to)
        if dtype is None:
            raise _ImportError(f"cast to {self._elem_name(to)} is not supported")
        if dtype == x.dtype:
            self.alias(node.output[0], x)
        else:
            self.bind(node.output[0], f"cast({x.name}, dtype={dtype})")

    def op_CastLike(self, node):
        x = self.dyn(node.input[0])
        _, dtype = self._out_info(node.output[0])
        if dtype == x.dtype:
            self.alias(node.output[0], x)
        else:
            self.bind(node.output[0], f"cast({x.name}, dtype={dtype})")

    # ---- masks

    def _softmax_only(self, name: str) -> bool:
        if name in self.outputs_set:
            return False
        for c in self.consumers.get(name, []):
            if c.op_type != "Softmax":
                return False
            rank = len(self.info[name][0] or ())
            axis = self._attr(c, "axis", -1 if self.opset >= 13 else 1)
            if axis not in (-1, rank - 1):
                return False
        return bool(self.consumers.get(name))

    def _is_causal(self, keep: np.ndarray, shape) -> bool:
        if len(shape) < 2 or keep.ndim > len(shape):
            return False
        s, t = shape[-2], shape[-1]
        try:
            full = np.broadcast_to(keep, tuple(shape[: len(shape) - 2]) + (s, t))
        except ValueError:
            return False
        tri = np.tril(np.ones((s, t), bool), k=t - s)
        return bool(np.all(full == tri))

    def _mask_fill_ok(self, fill: np.ndarray, out: str) -> bool:
        vals = np.unique(fill.astype(np.float64))
        if vals.size != 1:
            return False
        v = float(vals[0])
        return v == -math.inf or (v <= -1e4 and self._softmax_only(out))

    def _causal_add(self, node, sym: str, names) -> bool:
        """`x + M`, M a constant causal mask (0 kept, -inf or very negative above)."""
        if sym != "+" or node.output[0] not in self.info:
            return False
        pair = [(names[0], names[1]), (names[1], names[0])]
        for x_name, m_name in pair:
            if x_name not in self.env or m_name not in self.consts:
                continue
            x, m = self.env[x_name], self.consts[m_name]
            if m.dtype.kind != "f" or x.dtype not in _FLOATS or self.info[node.output[0]][0] != x.shape:
                continue
            keep = m == 0
            if not self._is_causal(keep, x.shape) or keep.all():
                continue
            if not self._mask_fill_ok(m[~keep], node.output[0]):
                continue
            self.bind(node.output[0], f"causal_mask({x.name})")
            return True
        return False

    def op_Where(self, node):
        cond_name, a_name, b_name = node.input[0], node.input[1], node.input[2]
        if cond_name not in self.consts:
            raise _ImportError("only a constant condition is supported (a mask known at import time)")
        cond = self.consts[cond_name].astype(bool)
        out_shape, dtype = self._out_info(node.output[0])
        if cond.all() or not cond.any():
            src = a_name if cond.all() else b_name
            self._broadcast_to(node, src, out_shape)
            return
        if a_name not in self.env and b_name in self.env:
            cond, a_name, b_name = ~cond, b_name, a_name
        a = self.dyn(a_name)
        if b_name in self.consts:
            b = self.consts[b_name]
            fill = np.broadcast_to(b, np.broadcast_shapes(b.shape, cond.shape))[~np.broadcast_to(cond, np.broadcast_shapes(b.shape, cond.shape))]
            if (
                a.shape == out_shape
                and dtype in _FLOATS
                and self._is_causal(cond, out_shape)
                and self._mask_fill_ok(fill, node.output[0])
            ):
                self.bind(node.output[0], f"causal_mask({a.name})")
                return
            np_dtype = _np_dtype(dtype)
            if dtype in _FLOATS:
                big = np.array(np.inf, np_dtype)
                small = np.array(-np.inf, np_dtype)
            else:
                big, small = np.iinfo(np_dtype).max, np.iinfo(np_dtype).min
            lo = np.where(cond, small, b).astype(np_dtype)
            hi = np.where(cond, big, b).astype(np_dtype)
            lo_p = self.param(node.output[0], lo, "lo")
            hi_p = self.param(node.output[0], hi, "hi")
            self.bind(node.output[0], f"minimum(maximum({a.name}, {lo_p.name}), {hi_p.name})")
            return
        b = self.dyn(b_name)
        np_dtype = _np_dtype(dtype)
        keep = self.param(node.output[0], cond.astype(np_dtype), "keep")
        drop = self.param(node.output[0], (~cond).astype(np_dtype), "drop")
        self.bind(node.output[0], f"{a.name} * {keep.name} + {b.name} * {drop.name}")

    def _broadcast_to(self, node, src: str, out_shape) -> None:
        x = self.dyn(src)
        if x.shape == tuple(out_shape):
            self.alias(node.output[0], x)
            return
        rank = len(out_shape)
        xs = (1,) * (rank - len(x.shape)) + x.shape
        ones_shape = tuple(1 if xd == od else od for xd, od in zip(xs, out_shape))
        # Trailing 1s can be dropped only if the rank is kept by x; keep full rank.
        ones = np.ones(ones_shape, _np_dtype(x.dtype))
        p = self.param(node.output[0], ones, "ones")
        self.bind(node.output[0], f"{x.name} * {p.name}")

    def op_Expand(self, node):
        out_shape, _ = self._out_info(node.output[0])
        self._broadcast_to(node, node.input[0], out_shape)

    def op_Tile(self, node):
        x = self.dyn(node.input[0])
        reps = [int(r) for r in self.const(node.input[1], "repeats")]
        if any(r < 1 for r in reps):
            raise _ImportError(f"repeats {reps} must be positive")
        # Build step by step through temporaries to keep each concat readable.
        cur = x
        for axis, r in enumerate(reps):
            if r > 1:
                shape = list(cur.shape)
                shape[axis] *= r
                last = all(rr == 1 for rr in reps[axis + 1 :])
                expr = f"concat([{', '.join([cur.name] * r)}], axis={axis})"
                if last:
                    self.bind(node.output[0], expr)
                    return
                cur = self.temp(f"{node.output[0]}_{axis}", expr, shape, cur.dtype)
        self.alias(node.output[0], cur)

    # ---- matrix products

    def op_MatMul(self, node):
        a, b = self.dyn(node.input[0]), self.dyn(node.input[1])
        out_shape, dtype = self._out_info(node.output[0])
        a_text, b_text = a.name, b.name
        if len(a.shape) == 1:
            a_text = self._reshaped(node.input[0], a, (1,) + a.shape)
        if len(b.shape) == 1:
            b_text = self._reshaped(node.input[1], b, b.shape + (1,))
        expr = f"{a_text} @ {b_text}"
        if len(a.shape) == 1 or len(b.shape) == 1:
            expr = f"reshape({expr}, {_shape_text(out_shape)})"
        self.bind(node.output[0], expr)

    # ---- quantization (ONNX QuantizeLinear, DequantizeLinear, MatMulInteger; ConvInteger is with Conv)

    def _per_axis(self, node, name: str, x: _Val) -> str:
        """A scale or zero point as an operand that broadcasts to `x`: scalar, or 1-D along `axis` reshaped to `[C, 1, ...]`."""
        val = self.dyn(name)
        if len(val.shape) == 0 or (len(val.shape) == 1 and val.shape[0] == 1 and len(x.shape) == 0):
            return val.name
        if len(val.shape) != 1 or self._attr(node, "block_size", 0):
            raise _ImportError("only per-tensor and per-axis (1-D) scales and zero points are supported")
        axis = int(self._attr(node, "axis", 1))
        axis = axis + len(x.shape) if axis < 0 else axis
        shape = val.shape + (1,) * (len(x.shape) - axis - 1)
        return val.name if shape == val.shape else self._reshaped(name, val, shape)

    def _zero_point(self, node, x: _Val, quantized: str) -> str:
        """`, zero_point=N` for a uniform constant zero point, `, ZP` for a tensor one, `` for none or zero."""
        if not self.has(node, 2):
            return ""
        name = node.input[2]
        if name in self.consts:
            values = np.unique(self.consts[name])
            if values.size == 1:
                value = int(values[0]) if quantized not in _FLOATS else float(values[0])
                if value == 0:
                    return ""
                if quantized in _FLOATS:
                    raise _ImportError(f"a nonzero zero point on {quantized} is not supported")
                return f", zero_point={value}"
        return f", {self._per_axis(node, name, x)}"

    def op_QuantizeLinear(self, node):
        x = self.dyn(node.input[0])
        _, dtype = self._out_info(node.output[0])
        if self._attr(node, "saturate", 1) != 1:
            raise _ImportError("QuantizeLinear with saturate=0 is not supported")
        scale = self._per_axis(node, node.input[1], x)
        zp = self._zero_point(node, x, dtype)
        self.bind(node.output[0], f"quantize({x.name}, {scale}{zp}, dtype={dtype})")

    def op_DequantizeLinear(self, node):
        q = self.dyn(node.input[0])
        _, dtype = self._out_info(node.output[0])
        scale = self._per_axis(node, node.input[1], q)
        zp = self._zero_point(node, q, q.dtype)
        self.bind(node.output[0], f"dequantize({q.name}, {scale}{zp}, dtype={dtype})")

    def op_MatMulInteger(self, node):
        a, b = self.dyn(node.input[0]), self.dyn(node.input[1])
        for i in (2, 3):
            if self.has(node, i) and (node.input[i] not in self.consts or np.any(self.consts[node.input[i]] != 0)):
                raise _ImportError("MatMulInteger with a nonzero zero point is not supported (subtract it first)")
        if a.dtype != b.dtype:
            raise _ImportError(f"MatMulInteger of {a.dtype} by {b.dtype} is not supported (operands of one dtype)")
        if len(a.shape) < 2 or len(b.shape) < 2:
            raise _ImportError("MatMulInteger of 1-D operands is not supported")
        self.bind(node.output[0], f"matmul({a.name}, {b.name}, dtype=i32)")

    def _reshaped(self, onnx_name: str, val: _Val, shape) -> str:
        if onnx_name in self.consts:
            return self.param(onnx_name, self.consts[onnx_name].reshape(shape), "r").name
        return f"reshape({val.name}, {_shape_text(shape)})"

    def op_Gemm(self, node):
        a, b = self.dyn(node.input[0]), self.dyn(node.input[1])
        a_text = f"transpose({a.name})" if self._attr(node, "transA", 0) else a.name
        b_text = f"transpose({b.name})" if self._attr(node, "transB", 0) else b.name
        alpha = float(self._attr(node, "alpha", 1.0))
        beta = float(self._attr(node, "beta", 1.0))
        expr = f"{a_text} @ {b_text}"
        if alpha != 1.0:
            expr = f"({expr}) * {_float_text(alpha, a.dtype)}"
        if self.has(node, 2) and beta != 0.0:
            c_name = node.input[2]
            if c_name in self.consts:
                c = self.consts[c_name]
                c_text = self.param(c_name).name if beta == 1.0 else self.param(c_name, c * np.asarray(beta, c.dtype), "beta").name
            else:
                c_text = self.env[c_name].name if beta == 1.0 else f"{self.env[c_name].name} * {_float_text(beta, a.dtype)}"
            expr = f"{expr} + {c_text}"
        self.bind(node.output[0], expr)

    # ---- convolution and pooling

    def _window_pads(self, node, spatial, kernel, strides, dilations) -> list[int]:
        """`[top, left, bottom, right]` padding of a 1-D or 2-D window op (1-D: top = bottom = 0)."""
        n = len(spatial)
        auto = self._attr(node, "auto_pad", "NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            pads = list(self._attr(node, "pads", [0] * (2 * n)))
            begin, end = pads[:n], pads[n:]
        elif auto == "VALID":
            begin, end = [0] * n, [0] * n
        else:
            begin, end = [], []
            for size, k, st, d in zip(spatial, kernel, strides, dilations):
                out = -(-size // st)
                total = max(0, (out - 1) * st + (k - 1) * d + 1 - size)
                small, large = total // 2, total - total // 2
                begin.append(small if auto == "SAME_UPPER" else large)
                end.append(large if auto == "SAME_UPPER" else small)
        if n == 1:
            return [0, begin[0], 0, end[0]]
        return [begin[0], begin[1], end[0], end[1]]

    @staticmethod
    def _pads_text(pads) -> str:
        t, l, b, r = pads
        if t == b and l == r:
            return str(t) if t == l else f"[{t}, {l}]"
        return f"[{t}, {l}, {b}, {r}]"

    @staticmethod
    def _pair_text(p) -> str:
        return str(p[0]) if p[0] == p[1] else f"[{p[0]}, {p[1]}]"

    def _spatial(self, x: _Val, what: str) -> int:
        """Number of spatial dims of a window op's input: 1 ([N, C, L], run as H = 1) or 2."""
        n = len(x.shape) - 2
        if n not in (1, 2):
            raise _ImportError(f"only 1-D and 2-D {what} are supported, got an input of rank {len(x.shape)}")
        return n

    @staticmethod
    def _as_2d(values, n: int, fill: int) -> list[int]:
        values = [int(v) for v in values]
        return [fill] + values if n == 1 else values

    def _as_image(self, x: _Val, n: int) -> str:
        return x.name if n == 2 else f"reshape({x.name}, {_shape_text(x.shape[:2] + (1,) + x.shape[2:])})"

    def _bind_window(self, node, expr: str, n: int) -> None:
        if n == 1:
            out_shape, _ = self._out_info(node.output[0])
            expr = f"reshape({expr}, {_shape_text(out_shape)})"
        self.bind(node.output[0], expr)

    def op_ConvInteger(self, node):
        x, w = self.dyn(node.input[0]), self.dyn(node.input[1])
        for i in (2, 3):
            if self.has(node, i) and (node.input[i] not in self.consts or np.any(self.consts[node.input[i]] != 0)):
                raise _ImportError("ConvInteger with a nonzero zero point is not supported (subtract it first)")
        if x.dtype != w.dtype:
            raise _ImportError(f"ConvInteger of {x.dtype} by {w.dtype} is not supported (operands of one dtype)")
        self.op_Conv(node, integer=True)

    def op_Conv(self, node, integer: bool = False):
        x, w = self.dyn(node.input[0]), self.dyn(node.input[1])
        n = self._spatial(x, "convolutions")
        kernel = list(w.shape[2:])
        strides = list(self._attr(node, "strides", [1] * n))
        dilations = list(self._attr(node, "dilations", [1] * n))
        groups = int(self._attr(node, "group", 1))
        pads = self._window_pads(node, x.shape[2:], kernel, strides, dilations)
        strides, dilations = self._as_2d(strides, n, 1), self._as_2d(dilations, n, 1)
        w_text = w.name
        if n == 1:
            w_text = self._reshaped(node.input[1], w, w.shape[:2] + (1,) + w.shape[2:])
        args = [self._as_image(x, n), w_text]
        if self.has(node, 2) and not integer:  # ConvInteger's third input is x's zero point, not a bias
            args.append(self.dyn(node.input[2]).name)
        attrs = []
        if strides != [1, 1]:
            attrs.append(f"stride={self._pair_text(strides)}")
        if any(pads):
            attrs.append(f"padding={self._pads_text(pads)}")
        if dilations != [1, 1]:
            attrs.append(f"dilation={self._pair_text(dilations)}")
        if groups != 1:
            attrs.append(f"groups={groups}")
        if integer:
            attrs.append("dtype=i32")
        self._bind_window(node, f"conv2d({', '.join(args + attrs)})", n)

    def op_BatchNormalization(self, node):
        if self._attr(node, "training_mode", 0) or any(o and self.uses[o] for o in node.output[1:]):
            raise _ImportError("only inference-mode BatchNormalization is supported")
        x = self.dyn(node.input[0])
        if len(x.shape) < 2:
            raise _ImportError(f"needs an input of rank >= 2, got rank {len(x.shape)}")
        scale, beta, mean, var = (self.const(n).astype(np.float64) for n in node.input[1:5])
        eps = float(self._attr(node, "epsilon", 1e-5))
        np_dtype = _np_dtype(x.dtype)
        bshape = (-1,) + (1,) * (len(x.shape) - 2)
        k = (scale / np.sqrt(var + eps)).reshape(bshape).astype(np_dtype)
        m = mean.reshape(bshape).astype(np_dtype)
        b = beta.reshape(bshape).astype(np_dtype)
        out = node.output[0]
        mp, kp, bp = self.param(out, m, "mean"), self.param(out, k, "scale"), self.param(out, b, "bias")
        self.bind(out, f"({x.name} - {mp.name}) * {kp.name} + {bp.name}")

    def _pool(self, node, fn: str) -> None:
        x = self.dyn(node.input[0])
        n = self._spatial(x, "pools")
        if len(node.output) > 1 and node.output[1] and self.uses[node.output[1]]:
            raise _ImportError("its Indices output is not supported")
        kernel = list(self._attr(node, "kernel_shape"))
        strides = list(self._attr(node, "strides", [1] * n))
        dilations = list(self._attr(node, "dilations", [1] * n))
        if any(d != 1 for d in dilations):
            raise _ImportError(f"dilations {dilations} are not supported (only 1)")
        pads = self._window_pads(node, x.shape[2:], kernel, strides, dilations)
        if fn == "avgpool2d" and any(pads) and self._attr(node, "count_include_pad", 0):
            raise _ImportError("count_include_pad=1 with padding is not supported (strata excludes the padding)")
        kernel, strides = self._as_2d(kernel, n, 1), self._as_2d(strides, n, 1)
        out_shape, _ = self._out_info(node.output[0])
        spatial = (1,) * (2 - n) + x.shape[2:]
        floor = [(size + pads[i] + pads[i + 2] - k) // st + 1 for i, (size, k, st) in enumerate(zip(spatial, kernel, strides))]
        if list(out_shape[2:]) != floor[2 - n :]:
            raise _ImportError("ceil_mode=1 changes the output size here; only floor mode is supported")
        attrs = [f"kernel={self._pair_text(kernel)}", f"stride={self._pair_text(strides)}"]
        if any(pads):
            attrs.append(f"padding={self._pads_text(pads)}")
        self._bind_window(node, f"{fn}({self._as_image(x, n)}, {', '.join(attrs)})", n)

    def op_MaxPool(self, node):
        self._pool(node, "maxpool2d")

    def op_AveragePool(self, node):
        self._pool(node, "avgpool2d")

    def op_GlobalAveragePool(self, node):
        x = self.dyn(node.input[0])
        if len(x.shape) == 4:
            self.bind(node.output[0], f"global_avgpool({x.name})")
        else:
            axes = list(range(2, len(x.shape)))
            self.bind(node.output[0], f"mean({x.name}, axis={axes}, keepdims=true)")

    def op_GlobalMaxPool(self, node):
        x = self.dyn(node.input[0])
        axes = list(range(2, len(x.shape)))
        self.bind(node.output[0], f"max({x.name}, axis={axes}, keepdims=true)")

    def op_LRN(self, node):
        x = self.dyn(node.input[0])
        if len(x.shape) != 4:
            raise _ImportError(f"only [N, C, H, W] inputs are supported, got rank {len(x.shape)}")
        size = int(self._attr(node, "size"))
        alpha, beta = float(self._attr(node, "alpha", 1e-4)), float(self._attr(node, "beta", 0.75))
        bias = float(self._attr(node, "bias", 1.0))
        c = x.shape[1]
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        band = np.zeros((c, c, 1, 1), _np_dtype(x.dtype))
        for i in range(c):
            band[i, max(0, i - lo) : min(c, i + hi + 1)] = 1
        p = self.param(node.output[0], band, "window")
        sq = self.temp(f"{node.output[0]}_sq", f"{x.name} * {x.name}", x.shape, x.dtype)
        scale = _float_text(alpha / size, x.dtype)
        self.bind(
            node.output[0],
            f"{x.name} / pow(conv2d({sq.name}, {p.name}) * {scale} + {_float_text(bias, x.dtype)}, {_float_text(beta, x.dtype)})",
        )

    def op_InstanceNormalization(self, node):
        x = self.dyn(node.input[0])
        if len(x.shape) < 3:
            raise _ImportError(f"needs an input of rank >= 3, got rank {len(x.shape)}")
        eps = float(self._attr(node, "epsilon", 1e-5))
        bshape = (-1,) + (1,) * (len(x.shape) - 2)
        np_dtype = _np_dtype(x.dtype)
        s = self.param(node.input[1], self.const(node.input[1]).reshape(bshape).astype(np_dtype), "c")
        b = self.param(node.input[2], self.const(node.input[2]).reshape(bshape).astype(np_dtype), "c")
        rows = x.shape[:2] + (int(np.prod(x.shape[2:], dtype=np.int64)),)
        norm = f"layernorm(reshape({x.name}, {_shape_text(rows)}), eps={_float_text(eps, 'f32')})"
        self.bind(node.output[0], f"reshape({norm}, {_shape_text(x.shape)}) * {s.name} + {b.name}")

    def op_PRelu(self, node):
        x = self.dyn(node.input[0])
        name = node.input[1]
        shape = self.dyn(name).shape if name in self.env else self.consts[name].shape
        try:
            ok = np.broadcast_shapes(x.shape, shape) == x.shape
        except ValueError:
            ok = False
        if not ok:
            if len(shape) == 1 and len(x.shape) >= 2 and shape[0] == x.shape[1]:
                name = self._aligned(name, shape, 1, len(x.shape), "channels")
            else:
                raise _ImportError(f"slope of shape {list(shape)} does not broadcast to the input {list(x.shape)}")
        slope = self.operand(name, x, dtype=x.dtype)
        self.bind(node.output[0], f"relu({x.name}) + {slope} * minimum({x.name}, 0.0)")

    def op_Elu(self, node):
        x = self.dyn(node.input[0])
        alpha = _float_text(self._attr(node, "alpha", 1.0), x.dtype)
        self.bind(node.output[0], f"relu({x.name}) + {alpha} * (exp(minimum({x.name}, 0.0)) - 1.0)")

    def op_Selu(self, node):
        x = self.dyn(node.input[0])
        alpha = _float_text(self._attr(node, "alpha", 1.67326319217681884765625), x.dtype)
        gamma = _float_text(self._attr(node, "gamma", 1.05070102214813232421875), x.dtype)
        self.bind(node.output[0], f"(relu({x.name}) + {alpha} * (exp(minimum({x.name}, 0.0)) - 1.0)) * {gamma}")

    def op_Softplus(self, node):
        x = self.dyn(node.input[0])
        self.bind(node.output[0], f"relu({x.name}) + log(exp(-abs({x.name})) + 1.0)")

    def op_Softsign(self, node):
        x = self.dyn(node.input[0])
        self.bind(node.output[0], f"{x.name} / (abs({x.name}) + 1.0)")

    def op_Pad(self, node):
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        mode = self._attr(node, "mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise _ImportError(f"mode '{mode}' is not supported (only 'constant')")
        if self.opset < 11:
            pads, value = list(self._attr(node, "pads")), float(self._attr(node, "value", 0.0))
            axes = list(range(rank))
        else:
            pads = [int(v) for v in self.const(node.input[1], "pads")]
            value = self.const(node.input[2], "constant_value").reshape(()).item() if self.has(node, 2) else 0
            axes = [int(a) for a in self.const(node.input[3], "axes")] if self.has(node, 3) else list(range(rank))
        axes = [a + rank if a < 0 else a for a in axes]
        k = len(axes)
        if any(p < 0 for p in pads):
            raise _ImportError(f"negative pads {pads} are not supported")
        cur = x
        np_dtype = _np_dtype(x.dtype)
        todo = [(axis, pads[i], pads[i + k]) for i, axis in enumerate(axes) if pads[i] or pads[i + k]]
        if not todo:
            self.alias(node.output[0], x)
            return
        for j, (axis, before, after) in enumerate(todo):
            parts = []
            for tag, size in (("before", before), ("after", after)):
                if size:
                    shape = list(cur.shape)
                    shape[axis] = size
                    parts.append(self.param(node.output[0], np.full(shape, value, np_dtype), f"{tag}{axis}").name)
                if tag == "before":
                    parts.append(cur.name)
            expr = f"concat([{', '.join(parts)}], axis={axis})"
            if j == len(todo) - 1:
                self.bind(node.output[0], expr)
            else:
                shape = list(cur.shape)
                shape[axis] += before + after
                cur = self.temp(f"{node.output[0]}_{axis}", expr, shape, cur.dtype)

    # ---- shape and data movement

    def _reshape_to_out(self, node) -> None:
        x = self.dyn(node.input[0])
        out_shape, _ = self._out_info(node.output[0])
        if x.shape == out_shape:
            self.alias(node.output[0], x)
        else:
            self.bind(node.output[0], f"reshape({x.name}, {_shape_text(out_shape)})")

    def op_Reshape(self, node):
        self._reshape_to_out(node)

    def op_Flatten(self, node):
        self._reshape_to_out(node)

    def op_Squeeze(self, node):
        self._reshape_to_out(node)

    def op_Unsqueeze(self, node):
        self._reshape_to_out(node)

    def op_Transpose(self, node):
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        perm = list(self._attr(node, "perm", list(reversed(range(rank)))))
        if perm == list(range(rank)):
            self.alias(node.output[0], x)
        else:
            self.bind(node.output[0], f"transpose({x.name}, perm={perm})")

    def op_Concat(self, node):
        axis = int(self._attr(node, "axis"))
        parts = [n for n in node.input if n and not (n in self.consts and 0 in self.consts[n].shape)]
        if len(parts) == 1:
            self.alias(node.output[0], self.dyn(parts[0]))
            return
        vals = [self.dyn(n) for n in parts]
        self.bind(node.output[0], f"concat([{', '.join(v.name for v in vals)}], axis={axis})")

    def op_Split(self, node):
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        axis = int(self._attr(node, "axis", 0))
        axis = axis + rank if axis < 0 else axis
        outs = list(node.output)
        sizes = [self._out_info(o)[0][axis] if o else None for o in outs]
        if None in sizes:
            raise _ImportError("an unnamed output of Split is not supported")
        if len(set(sizes)) == 1 and sizes[0] * len(outs) == x.shape[axis]:
            if len(outs) == 1:
                self.alias(outs[0], x)
                return
            names = [self._fresh(o) for o in outs]
            self.lines.append(f"  {', '.join(names)} = split({x.name}, parts={len(outs)}, axis={axis})")
            for o, n in zip(outs, names):
                shape, dtype = self._out_info(o)
                self.env[o] = _Val(n, shape, dtype)
            return
        start = 0
        for o, size in zip(outs, sizes):
            if self.uses[o]:
                self.bind(o, f"slice({x.name}, axis={axis}, start={start}, end={start + size})")
            start += size

    def op_Slice(self, node):
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        if self.opset < 10:
            starts, ends = self._attr(node, "starts"), self._attr(node, "ends")
            axes, steps = self._attr(node, "axes", list(range(len(starts)))), [1] * len(starts)
        else:
            starts = [int(v) for v in self.const(node.input[1], "starts")]
            ends = [int(v) for v in self.const(node.input[2], "ends")]
            axes = [int(v) for v in self.const(node.input[3], "axes")] if self.has(node, 3) else list(range(len(starts)))
            steps = [int(v) for v in self.const(node.input[4], "steps")] if self.has(node, 4) else [1] * len(starts)
        expr = x.name
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = axis + rank if axis < 0 else axis
            dim = x.shape[axis]
            if step <= 0:
                raise _ImportError(f"step {step} is not supported (only positive steps)")
            start = min(max(start + dim if start < 0 else start, 0), dim)
            end = min(max(end + dim if end < 0 else end, 0), dim)
            if start >= end:
                raise _ImportError(f"slice [{start}:{end}] of axis {axis} is empty; strata needs positive dims")
            if step != 1:
                if start + step < end:
                    raise _ImportError(f"step {step} is not supported (only 1)")
                end = start + 1
            if start == 0 and end == dim:
                continue
            expr = f"slice({expr}, axis={axis}, start={start}, end={end})"
        if expr == x.name:
            self.alias(node.output[0], x)
        else:
            self.bind(node.output[0], expr)

    def op_Gather(self, node):
        data_name, ids_name = node.input[0], node.input[1]
        out_shape, dtype = self._out_info(node.output[0])
        if data_name in self.consts:
            rank = self.consts[data_name].ndim
        else:
            rank = len(self.dyn(data_name).shape)
        axis = int(self._attr(node, "axis", 0))
        axis = axis + rank if axis < 0 else axis
        if ids_name in self.consts and data_name in self.env:
            x = self.env[data_name]
            ids = self.consts[ids_name].astype(np.int64)
            dim = x.shape[axis]
            ids = np.where(ids < 0, ids + dim, ids)
            flat = ids.reshape(-1)
            if flat.size and np.all(flat == np.arange(flat[0], flat[0] + flat.size)) and 0 <= flat[0] and flat[-1] < dim:
                expr = x.name
                if not (flat[0] == 0 and flat.size == dim):
                    expr = f"slice({x.name}, axis={axis}, start={int(flat[0])}, end={int(flat[-1]) + 1})"
                if ids.ndim != 1:
                    expr = f"reshape({expr}, {_shape_text(out_shape)})"
                if expr == x.name:
                    self.alias(node.output[0], x)
                else:
                    self.bind(node.output[0], expr)
                return
            ids_text = self.param(ids_name, ids, "ids").name
            ids_shape = ids.shape
        else:
            ids_val = self.dyn(ids_name)
            if ids_val.dtype in _FLOATS:
                raise _ImportError(f"indices must be integers, got {ids_val.dtype}")
            ids_text, ids_shape = ids_val.name, ids_val.shape
        if data_name in self.consts:
            table = self.consts[data_name]
            if axis != 0:
                table = self.param(data_name, np.moveaxis(table, axis, 0), f"axis{axis}")
            else:
                table = self.param(data_name)
            table_text = table.name
        else:
            x = self.env[data_name]
            if axis != 0:
                perm = [axis] + [d for d in range(rank) if d != axis]
                table_text = f"transpose({x.name}, perm={perm})"
            else:
                table_text = x.name
        expr = f"gather({table_text}, {ids_text})"
        if axis != 0:
            r = len(ids_shape)
            perm = list(range(r, r + axis)) + list(range(r)) + list(range(r + axis, r + rank - 1))
            if perm != list(range(len(perm))):
                expr = f"transpose({expr}, perm={perm})"
        self.bind(node.output[0], expr)

    # ---- rows and reductions

    def _softmax(self, node, fn: str) -> None:
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        if self.opset >= 13:
            axis = int(self._attr(node, "axis", -1))
            self.bind(node.output[0], f"{fn}({x.name}, axis={axis})")
            return
        axis = int(self._attr(node, "axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis == rank - 1:
            self.bind(node.output[0], f"{fn}({x.name}, axis=-1)")
            return
        rows = int(np.prod(x.shape[:axis], dtype=np.int64))
        flat = f"reshape({x.name}, [{rows}, -1])"
        self.bind(node.output[0], f"reshape({fn}({flat}, axis=-1), {_shape_text(x.shape)})")

    def op_Softmax(self, node):
        self._softmax(node, "softmax")

    def op_LogSoftmax(self, node):
        self._softmax(node, "log_softmax")

    def _norm_param(self, name: str, x: _Val, want_shape, tag: str) -> str:
        if name in self.consts:
            arr = self.consts[name]
            target = np.broadcast_to(arr, want_shape).astype(_np_dtype(x.dtype))
            if arr.shape == tuple(want_shape) and self._lang_dtype(arr, name) == x.dtype:
                return self.param(name).name
            return self.param(name, np.ascontiguousarray(target), tag).name
        v = self.dyn(name)
        if v.shape != tuple(want_shape):
            raise _ImportError(f"a runtime {tag} of shape {list(v.shape)} is not supported (needs {list(want_shape)})")
        return v.name if v.dtype == x.dtype else f"cast({v.name}, dtype={x.dtype})"

    def op_LayerNormalization(self, node):
        if any(o and self.uses[o] for o in node.output[1:]):
            raise _ImportError("its Mean and InvStdDev outputs are not supported")
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        axis = int(self._attr(node, "axis", -1))
        axis = axis + rank if axis < 0 else axis
        want = x.shape[axis:]
        args = [x.name, self._norm_param(node.input[1], x, want, "scale")]
        if self.has(node, 2):
            args.append(self._norm_param(node.input[2], x, want, "bias"))
        attrs = [] if axis == rank - 1 else [f"axis={axis}"]
        eps = float(self._attr(node, "epsilon", 1e-5))
        if np.float32(eps) != np.float32(1e-5):
            attrs.append(f"eps={_float_text(eps, 'f32')}")
        self.bind(node.output[0], f"layernorm({', '.join(args + attrs)})")

    def op_RMSNormalization(self, node):
        x = self.dyn(node.input[0])
        rank = len(x.shape)
        axis = int(self._attr(node, "axis", -1))
        axis = axis + rank if axis < 0 else axis
        args = [x.name, self._norm_param(node.input[1], x, x.shape[axis:], "scale")]
        eps = float(self._attr(node, "epsilon", 1e-5))
        attrs = ([] if axis == rank - 1 else [f"axis={axis}"]) + [f"eps={_float_text(eps, 'f32')}"]
        self.bind(node.output[0], f"rmsnorm({', '.join(args + attrs)})")

    def _reduce_axes(self, node, rank: int) -> list[int] | None:
        if self.has(node, 1):
            axes = [int(a) for a in self.const(node.input[1], "axes").reshape(-1)]
        else:
            axes = self._attr(node, "axes")
            axes = None if axes is None else [int(a) for a in axes]
        if not axes:
            return None
        return sorted(a + rank if a < 0 else a for a in axes)

    def _reduce(self, node, fn: str, square: bool = False, root: bool = False) -> None:
        x = self.dyn(node.input[0])
        axes = self._reduce_axes(node, len(x.shape))
        keep = bool(self._attr(node, "keepdims", 1))
        if axes is None and self._attr(node, "noop_with_empty_axes", 0):
            self.alias(node.output[0], x)
            return
        src = f"{x.name} * {x.name}" if square else x.name
        attrs = ([] if axes is None else [f"axis={axes}"]) + (["keepdims=true"] if keep else [])
        expr = f"{fn}({', '.join([src] + attrs)})"
        self.bind(node.output[0], f"sqrt({expr})" if root else expr)

    def op_ReduceMean(self, node):
        self._reduce(node, "mean")

    def op_ReduceSum(self, node):
        self._reduce(node, "sum")

    def op_ReduceMax(self, node):
        self._reduce(node, "max")

    def op_ReduceMin(self, node):
        self._reduce(node, "min")

    def op_ReduceSumSquare(self, node):
        self._reduce(node, "sum", square=True)

    def op_ReduceL2(self, node):
        self._reduce(node, "sum", square=True, root=True)


SUPPORTED_OPS = sorted(
    name[3:] for name in dir(_Importer) if name.startswith("op_")
)
"""ONNX op types the importer translates (besides any node it can fold to a constant)."""


# --------------------------------------------------------------------------- text helpers


def _np_dtype(dtype: str) -> np.dtype:
    from strata.compiler.execution.reference import NUMPY_DTYPES

    return NUMPY_DTYPES[dtype]


def _float_text(value: float, dtype: str) -> str:
    """A float literal that reads back as exactly `value` rounded to `dtype`."""
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "(-inf)"
    if dtype == "f32":
        text = str(np.float32(value))
    elif dtype == "f16":
        text = str(np.float16(value))
    else:
        text = repr(float(np.asarray(value).astype(_np_dtype(dtype)).astype(np.float64)))
    if not any(c in text for c in ".e"):
        text += ".0"
    if text.startswith("-"):
        text = f"({text})"
    return text


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"
