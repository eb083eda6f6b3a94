"""
Tests of the NumPy reference executor against hand-written NumPy.

Each test builds a tiny `func.func` of graph ops with the dialect's
constructors (result types from `dialects.graph.shapes`), runs it, and
compares with an independent computation: explicit loops for convolution and
pooling, `math.erf` for erf/gelu, bit-exact expectations for rounding.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FileLineColLoc,
    IntAttr,
    FusedLoc,
    ModuleOp,
    NoneAttr,
    StringAttr,
    UnknownLoc,
)
from xdsl.dialects.test import TestOp as XTestOp
from xdsl.ir import Block, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import IsTerminator

from strata.compiler.execution import reference as ref
from strata.compiler.diagnostics import StrataError
from strata.dialects.graph import INPUT_ATTR, PARAM_ATTR, shapes
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import dtype_name, tensor_type

RNG = np.random.default_rng(0)
BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn


# --------------------------------------------------------------------------- helpers


def shape(v: SSAValue) -> tuple[int, ...]:
    return tuple(v.type.get_shape())


def dt(v: SSAValue) -> str:
    return dtype_name(v.type.element_type)


def ty(v: SSAValue, new_shape) -> object:
    """Tensor type with `v`'s dtype and `new_shape`."""
    return tensor_type(dt(v), new_shape)


def build(arg_types, body, arg_attrs=None) -> func.FuncOp:
    """A verified `func.func @f` whose body `body(*args)` returns its results."""
    block = Block(arg_types=arg_types)
    with ImplicitBuilder(block) as args:
        results = body(*args)
        results = [results] if isinstance(results, SSAValue) else list(results)
        func.ReturnOp(*results)
    f = func.FuncOp("f", (arg_types, [r.type for r in results]), Region(block), arg_attrs=arg_attrs)
    f.verify()
    return f


def run(body, *arrays):
    """Build a function over `arrays`' types and run it on them."""
    types = [tensor_type(ref.model_dtype_name(a.dtype), a.shape) for a in arrays]
    return ref.run_function(build(types, body), arrays)


def run1(body, *arrays):
    (out,) = run(body, *arrays)
    return out


def randn(*dims, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(dims).astype(dtype)


def close(got, want, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- elementwise

BINARY = {
    g.AddOp: np.add,
    g.SubOp: np.subtract,
    g.MulOp: np.multiply,
    g.DivOp: np.divide,
    g.MaximumOp: np.maximum,
    g.MinimumOp: np.minimum,
}

BROADCASTS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((2, 1, 4), (3, 1)), ((), (2, 2))]


@pytest.mark.parametrize("op_class", list(BINARY), ids=lambda c: c.name)
@pytest.mark.parametrize("shapes_ab", BROADCASTS, ids=str)
def test_binary_broadcasting(op_class, shapes_ab):
    sa, sb = shapes_ab
    a, b = randn(*sa), randn(*sb)
    out = run1(lambda x, y: op_class(x, y, ty(x, shapes.broadcast(sa, sb))).result, a, b)
    assert out.dtype == np.float32 and out.shape == np.broadcast_shapes(sa, sb)
    close(out, BINARY[op_class](a, b))


def test_pow_float():
    a = np.abs(randn(3, 4)) + 0.1
    b = randn(4)
    close(run1(lambda x, y: g.PowOp(x, y, ty(x, (3, 4))).result, a, b), a**b)


def test_integer_division_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0, 5, -6], np.int32)
    b = np.array([2, 2, -2, -2, 3, 0, 3], np.int32)
    out = run1(lambda x, y: g.DivOp(x, y, ty(x, (7,))).result, a, b)
    assert out.dtype == np.int32
    # 5 / 0 is defined as 0 by the reference.
    assert out.tolist() == [3, -3, -3, 3, 0, 0, -2]


def test_integer_pow_and_wrapping():
    a = np.array([2, -2, 1, -1, -1, 3, 16], np.int8)
    b = np.array([3, 3, -5, -3, -2, -1, 2], np.int8)
    out = run1(lambda x, y: g.PowOp(x, y, ty(x, (7,))).result, a, b)
    # 16**2 = 256 wraps to 0 in i8; negative exponents truncate toward zero.
    assert out.dtype == np.int8 and out.tolist() == [8, -8, 1, -1, 1, 0, 0]
    s = run1(lambda x, y: g.AddOp(x, y, ty(x, (7,))).result, a, np.full(7, 127, np.int8))
    assert s.tolist() == [-127, 125, -128, 126, 126, -126, -113]


def erf_exact(x) -> np.ndarray:
    return np.vectorize(math.erf)(np.asarray(x, np.float64))


UNARY = {
    g.ReluOp: lambda x: np.maximum(x, 0),
    g.GeluOp: lambda x: 0.5 * x * (1 + erf_exact(x / math.sqrt(2))),
    g.SiluOp: lambda x: x / (1 + np.exp(-x)),
    g.SigmoidOp: lambda x: 1 / (1 + np.exp(-x)),
    g.TanhOp: np.tanh,
    g.ExpOp: np.exp,
    g.LogOp: lambda x: np.log(np.abs(x)),
    g.SqrtOp: lambda x: np.sqrt(np.abs(x)),
    g.RsqrtOp: lambda x: 1 / np.sqrt(np.abs(x)),
    g.AbsOp: np.abs,
    g.ErfOp: erf_exact,
    g.NegOp: np.negative,
}
POSITIVE_ONLY = {g.LogOp, g.SqrtOp, g.RsqrtOp}


@pytest.mark.parametrize("op_class", list(UNARY), ids=lambda c: c.name)
def test_unary(op_class):
    x = randn(4, 5) * 3
    if op_class in POSITIVE_ONLY:
        x = np.abs(x) + 0.01
    out = run1(lambda v: op_class(v).result, x)
    assert out.dtype == np.float32
    close(out, UNARY[op_class](x.astype(np.float64)), rtol=1e-6, atol=1e-7)


def test_erf_matches_math_erf_to_float64_precision():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1e-300, -30.0, 30.0, 0.84375, 1.25, 1 / 0.35, 28.0]])
    assert np.max(np.abs(ref.erf(x) - erf_exact(x))) < 1e-15
    tail = np.linspace(0, 26, 2001)
    want = np.vectorize(math.erfc)(tail)
    assert np.max(np.abs(ref.erfc(tail) - want) / want) < 1e-14
    assert np.max(np.abs(ref.erfc(-tail) - np.vectorize(math.erfc)(-tail))) < 1e-15
    special = ref.erf(np.array([np.inf, -np.inf, np.nan]))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])


def test_gelu_is_accurate_in_the_far_negative_tail():
    # 1 + erf(x) cancels there; the reference uses erfc, so the relative
    # error stays small.
    x = np.array([-8.0, -10.0], np.float32)
    want = 0.5 * x.astype(np.float64) * np.vectorize(math.erfc)(-x.astype(np.float64) / math.sqrt(2))
    out = run1(lambda v: g.GeluOp(v).result, x)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert np.all(out < 0)


def test_sigmoid_saturates_without_nan():
    x = np.array([-1000.0, 1000.0, 0.0], np.float32)
    assert run1(lambda v: g.SigmoidOp(v).result, x).tolist() == [0.0, 1.0, 0.5]


# --------------------------------------------------------------------------- cast and constant


def test_cast_float_to_int_truncates_saturates_and_zeroes_nan():
    x = np.array([2.7, -2.7, 1e10, -1e10, np.nan, np.inf, -0.5], np.float32)
    out = run1(lambda v: g.CastOp(v, tensor_type("i32", (7,))).result, x)
    info = np.iinfo(np.int32)
    assert out.dtype == np.int32
    assert out.tolist() == [2, -2, info.max, info.min, 0, info.max, 0]


def test_cast_int_to_int_wraps_and_int_to_float():
    x = np.array([300, -129, 5], np.int64)
    assert run1(lambda v: g.CastOp(v, tensor_type("i8", (3,))).result, x).tolist() == [44, 127, 5]
    out = run1(lambda v: g.CastOp(v, tensor_type("f32", (3,))).result, x)
    assert out.dtype == np.float32 and out.tolist() == [300.0, -129.0, 5.0]


def test_cast_to_bf16_rounds_to_nearest_even():
    # bf16 has 8 significand bits: between 1 and 2 its spacing is 2**-7.
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20], np.float32)
    out = run1(lambda v: g.CastOp(v, tensor_type("bf16", (3,))).result, x)
    assert out.dtype == BF16
    assert out.astype(np.float32).tolist() == [1.0, 1 + 2**-6, 1 + 2**-7]


def test_cast_between_low_precision_floats():
    x = np.array([1.0, 300.0, 1000.0], BF16)
    out = run1(lambda v: g.CastOp(v, tensor_type("f8e4m3", (3,))).result, x)
    assert out.dtype == E4M3
    got = out.astype(np.float32)
    # f8e4m3 has no infinity: overflow is NaN.
    assert got[0] == 1.0 and got[1] == 288.0 and np.isnan(got[2])


@pytest.mark.parametrize(
    "dtype, value, want",
    [("f32", 0.125, 0.125), ("bf16", 1 + 2**-8, 1.0), ("i32", 3.0, 3), ("f32", -math.inf, -math.inf)],
)
def test_constant(dtype, value, want):
    f = build([], lambda: g.ConstantOp(value, tensor_type(dtype, (2, 3))).result)
    (out,) = ref.run_function(f, [])
    assert out.dtype == ref.NUMPY_DTYPES[dtype] and out.shape == (2, 3)
    assert np.all(out.astype(np.float64) == want)


# --------------------------------------------------------------------------- low precision


def test_bf16_rounds_after_every_op():
    one = np.array([1.0], BF16)
    eps = np.array([2**-8], BF16)

    def body(a, b):
        s = g.AddOp(a, b, a.type).result
        return g.AddOp(s, b, a.type).result

    out = run1(body, one, eps)
    # Each add rounds 1 + 2**-8 back to 1 (tie to even); f32 throughout
    # would give 1 + 2**-7.
    assert out.dtype == BF16 and float(out[0]) == 1.0


def test_bf16_matmul_accumulates_in_f32():
    a = np.array([[1.0, 2**-8, 2**-8]], BF16)
    b = np.ones((3, 1), BF16)
    out = run1(lambda x, y: g.MatmulOp(x, y, ty(x, (1, 1))).result, a, b)
    # A bf16 accumulator would lose both small terms.
    assert out.dtype == BF16 and float(out[0, 0]) == 1 + 2**-7


def test_f16_matches_numpy_float16():
    a, b = randn(8, dtype=np.float16), randn(8, dtype=np.float16)
    out = run1(lambda x, y: g.MulOp(x, y, x.type).result, a, b)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, (a.astype(np.float32) * b.astype(np.float32)).astype(np.float16))


def test_f8e4m3_overflow_is_nan():
    a = np.array([256.0, 2.0], E4M3)
    out = run1(lambda x, y: g.AddOp(x, y, x.type).result, a, a).astype(np.float32)
    assert np.isnan(out[0]) and out[1] == 4.0


# --------------------------------------------------------------------------- matmul and conv


@pytest.mark.parametrize(
    "sa, sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 6))]
)
def test_matmul_broadcasts_batch_dims(sa, sb):
    a, b = randn(*sa), randn(*sb)
    out = run1(lambda x, y: g.MatmulOp(x, y, ty(x, shapes.matmul(sa, sb))).result, a, b)
    close(out, a.astype(np.float64) @ b.astype(np.float64))


def test_integer_matmul_wraps():
    a = np.full((1, 4), 100, np.int8)
    b = np.full((4, 1), 1, np.int8)
    out = run1(lambda x, y: g.MatmulOp(x, y, ty(x, (1, 1))).result, a, b)
    assert out.dtype == np.int8 and out[0, 0] == 400 - 512


def conv_loops(x, w, b, strides, pads, dilations, groups):
    """ONNX Conv by definition, one output element at a time."""
    n_, c_, h_, w_ = x.shape
    o_, cg, kh, kw = w.shape
    oh = (h_ + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w_ + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n_, o_, oh, ow))
    per_group = o_ // groups
    for n in range(n_):
        for o in range(o_):
            grp = o // per_group
            for y in range(oh):
                for xx in range(ow):
                    acc = float(b[o]) if b is not None else 0.0
                    for c in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                hy = y * strides[0] + i * dilations[0] - pads[0]
                                wx = xx * strides[1] + j * dilations[1] - pads[1]
                                if 0 <= hy < h_ and 0 <= wx < w_:
                                    acc += float(x[n, grp * cg + c, hy, wx]) * float(w[o, c, i, j])
                    out[n, o, y, xx] = acc
    return out


CONV_CASES = [
    # (x shape, w shape, strides, pads, dilations, groups, bias)
    ((1, 3, 5, 6), (4, 3, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, False),
    ((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    ((1, 2, 7, 6), (3, 2, 3, 2), (2, 1), (1, 0, 2, 1), (1, 1), 1, True),
    ((1, 4, 7, 7), (4, 2, 3, 3), (1, 2), (1, 1, 1, 1), (1, 1), 2, True),
    ((1, 4, 6, 6), (4, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4, False),
    ((1, 2, 8, 7), (2, 2, 3, 2), (1, 1), (2, 1, 0, 1), (2, 3), 1, True),
    ((2, 6, 9, 8), (6, 2, 3, 3), (2, 2), (0, 1, 2, 0), (2, 1), 3, True),
    ((1, 3, 4, 4), (2, 3, 1, 1), (3, 3), (0, 0, 0, 0), (1, 1), 1, True),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"x{c[0]}w{c[1]}s{c[2]}p{c[3]}d{c[4]}g{c[5]}")
def test_conv2d_matches_loops(case):
    xs, ws, strides, pads, dilations, groups, has_bias = case
    x, w, b = randn(*xs), randn(*ws), randn(ws[0])
    out_shape = shapes.conv2d(xs, ws, strides, pads, dilations, groups)

    def body(xv, wv, bv):
        return g.Conv2DOp(
            xv, wv, bv if has_bias else None, ty(xv, out_shape), strides, pads, dilations, groups
        ).result

    out = run1(body, x, w, b)
    assert out.shape == out_shape
    close(out, conv_loops(x, w, b if has_bias else None, strides, pads, dilations, groups), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- pooling


def pool_loops(x, kernel, strides, pads, kind):
    n_, c_, h_, w_ = x.shape
    oh = (h_ + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    ow = (w_ + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    out = np.zeros((n_, c_, oh, ow))
    for n in range(n_):
        for c in range(c_):
            for y in range(oh):
                for xx in range(ow):
                    cells = [
                        float(x[n, c, hy, wx])
                        for i in range(kernel[0])
                        for j in range(kernel[1])
                        if 0 <= (hy := y * strides[0] + i - pads[0]) < h_
                        and 0 <= (wx := xx * strides[1] + j - pads[1]) < w_
                    ]
                    out[n, c, y, xx] = max(cells) if kind == "max" else sum(cells) / len(cells)
    return out


POOL_CASES = [
    ((3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 2), (2, 2), (0, 0, 0, 0)),
    ((3, 2), (1, 2), (1, 0, 2, 1)),
    ((3, 3), (3, 2), (2, 1, 0, 1)),
]


@pytest.mark.parametrize("op_class, kind", [(g.MaxPool2DOp, "max"), (g.AvgPool2DOp, "avg")])
@pytest.mark.parametrize("kernel, strides, pads", POOL_CASES, ids=str)
def test_pool2d_matches_loops(op_class, kind, kernel, strides, pads):
    # All-negative inputs: a max that let zero padding win would show.
    x = -np.abs(randn(2, 3, 7, 6)) - 0.5
    out_shape = shapes.pool2d(x.shape, kernel, strides, pads)
    out = run1(lambda v: op_class(v, kernel, strides, pads, ty(v, out_shape)).result, x)
    close(out, pool_loops(x, kernel, strides, pads, kind))


def test_avgpool_does_not_count_padding():
    x = np.ones((1, 1, 2, 2), np.float32)
    out = run1(lambda v: g.AvgPool2DOp(v, (2, 2), (1, 1), (1, 1, 1, 1), ty(v, (1, 1, 3, 3))).result, x)
    np.testing.assert_array_equal(out, np.ones((1, 1, 3, 3)))


def test_maxpool_on_integers():
    x = np.arange(-16, 0, dtype=np.int32).reshape(1, 1, 4, 4)
    out = run1(lambda v: g.MaxPool2DOp(v, (2, 2), (2, 2), (1, 1, 1, 1), ty(v, (1, 1, 3, 3))).result, x)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, pool_loops(x, (2, 2), (2, 2), (1, 1, 1, 1), "max"))


def test_global_avgpool():
    x = randn(2, 3, 4, 5)
    out = run1(lambda v: g.GlobalAvgPoolOp(v, ty(v, (2, 3, 1, 1))).result, x)
    close(out, x.astype(np.float64).mean(axis=(2, 3), keepdims=True))


# --------------------------------------------------------------------------- reductions


REDUCTIONS = {g.SumOp: np.sum, g.MeanOp: np.mean, g.ReduceMaxOp: np.max, g.ReduceMinOp: np.min}


@pytest.mark.parametrize("op_class", list(REDUCTIONS), ids=lambda c: c.name)
@pytest.mark.parametrize("axes", [(0,), (1, 2), (0, 1, 2), (2,), ()], ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(op_class, axes, keepdims):
    x = randn(2, 3, 4)
    out_shape = shapes.reduce(x.shape, axes, keepdims)
    out = run1(lambda v: op_class(v, axes, keepdims, ty(v, out_shape)).result, x)
    assert out.shape == out_shape
    close(out, REDUCTIONS[op_class](x.astype(np.float64), axis=axes, keepdims=keepdims))


def test_integer_sum_wraps_and_mean_truncates():
    x = np.array([[100, 100, 100], [-7, 0, 0]], np.int8)
    s = run1(lambda v: g.SumOp(v, (1,), False, ty(v, (2,))).result, x)
    m = run1(lambda v: g.MeanOp(v, (1,), False, ty(v, (2,))).result, x)
    assert s.dtype == np.int8 and s.tolist() == [300 - 256, -7]
    assert m.tolist() == [100, -2]


# --------------------------------------------------------------------------- row-wise ops


def softmax64(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_and_log_softmax(axis):
    x = randn(2, 3, 4) * 5 + 1000  # large offset: a naive exp would overflow
    x64 = x.astype(np.float64)
    out = run1(lambda v: g.SoftmaxOp(v, axis).result, x)
    close(out, softmax64(x64, axis))
    out = run1(lambda v: g.LogSoftmaxOp(v, axis).result, x)
    close(out, np.log(softmax64(x64, axis)), atol=1e-5)


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("with_scale, with_bias", [(False, False), (True, False), (False, True), (True, True)])
def test_layernorm(axis, with_scale, with_bias):
    x = randn(2, 3, 4) * 2 + 3
    pshape = x.shape[axis:]
    scale, bias = randn(*pshape), randn(*pshape)
    eps = 1e-3

    def body(v, s, b):
        return g.LayerNormOp(v, s if with_scale else None, b if with_bias else None, axis, eps).result

    out = run1(body, x, scale, bias)
    x64 = x.astype(np.float64)
    axes = tuple(range(axis, 3))
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)  # biased
    want = (x64 - mean) / np.sqrt(var + eps)
    if with_scale:
        want = want * scale
    if with_bias:
        want = want + bias
    close(out, want, atol=1e-5)


@pytest.mark.parametrize("with_scale", [False, True])
def test_rmsnorm(with_scale):
    x, scale = randn(3, 2, 4), randn(2, 4)
    eps = 1e-6
    out = run1(lambda v, s: g.RmsNormOp(v, s if with_scale else None, 1, eps).result, x, scale)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64**2).mean(axis=(1, 2), keepdims=True) + eps)
    close(out, want * scale if with_scale else want)


@pytest.mark.parametrize("s, t", [(4, 4), (2, 5), (5, 3), (1, 1)])
def test_causal_mask(s, t):
    x = randn(2, s, t)
    out = run1(lambda v: g.CausalMaskOp(v).result, x)
    for i in range(s):
        for j in range(t):
            if j > i + (t - s):
                assert np.all(out[:, i, j] == -np.inf)
            else:
                np.testing.assert_array_equal(out[:, i, j], x[:, i, j])


def test_causal_mask_in_f8e4m3_uses_the_lowest_finite_value():
    x = np.ones((2, 2), E4M3)
    out = run1(lambda v: g.CausalMaskOp(v).result, x).astype(np.float32)
    assert out.tolist() == [[1.0, -448.0], [1.0, 1.0]]


# --------------------------------------------------------------------------- data movement


def test_transpose_reshape_concat_slice():
    x, y = randn(2, 3, 4), randn(2, 3, 1)

    def body(a, b):
        t = g.TransposeOp(a, (2, 0, 1), ty(a, (4, 2, 3))).result
        r = g.ReshapeOp(t, ty(a, (8, 3))).result
        c = g.ConcatOp([a, b, a], 2, ty(a, (2, 3, 9))).result
        s = g.SliceOp(c, 2, 3, 5, ty(a, (2, 3, 2))).result
        return t, r, c, s

    t, r, c, s = run(body, x, y)
    np.testing.assert_array_equal(t, x.transpose(2, 0, 1))
    np.testing.assert_array_equal(r, x.transpose(2, 0, 1).reshape(8, 3))
    np.testing.assert_array_equal(c, np.concatenate([x, y, x], axis=2))
    np.testing.assert_array_equal(s, np.concatenate([x, y, x], axis=2)[:, :, 3:5])


@pytest.mark.parametrize("axis, parts", [(0, 2), (1, 3), (2, 1)])
def test_split(axis, parts):
    x = randn(4, 6, 5)
    part = shapes.split(x.shape, parts, axis)
    outs = run(lambda v: g.SplitOp(v, axis, [ty(v, part)] * parts).outputs, x)
    for got, want in zip(outs, np.split(x, parts, axis=axis), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("ids_dtype", [np.int8, np.int32, np.int64])
def test_gather_counts_negative_ids_from_the_end(ids_dtype):
    """ONNX Gather: -1 is the last row, -rows the first."""
    table = randn(5, 3)
    ids = np.array([[0, 4, -3], [-1, 2, -5]], ids_dtype)
    out = run1(lambda t, i: g.GatherOp(t, i, ty(t, (2, 3, 3))).result, table, ids)
    np.testing.assert_array_equal(out, table[[[0, 4, 2], [4, 2, 0]]])


@pytest.mark.parametrize("bad", [5, 999999, -6])
def test_gather_refuses_ids_out_of_range(bad):
    """Issue 18: ids outside [-rows, rows) were clamped to a plausible wrong row."""
    table = randn(5, 3)
    ids = np.array([0, bad, 1], np.int32)
    with pytest.raises(ref.ExecutionError, match=rf"gather id {bad} is out of range for a table of 5 rows"):
        run1(lambda t, i: g.GatherOp(t, i, ty(t, (3, 3))).result, table, ids)


def test_gather_bf16_table_is_exact():
    table = randn(4, 2).astype(BF16)
    ids = np.array([3, 0], np.int32)
    out = run1(lambda t, i: g.GatherOp(t, i, ty(t, (2, 2))).result, table, ids)
    assert out.dtype == BF16
    np.testing.assert_array_equal(out.view(np.uint16), table[[3, 0]].view(np.uint16))


# --------------------------------------------------------------------------- execution machinery


def test_values_used_many_times_and_returned_twice():
    x = randn(3)

    def body(a):
        b = g.MulOp(a, a, a.type).result
        c = g.AddOp(b, a, a.type).result
        return c, b, c

    c, b, c2 = run(body, x)
    close(b, x * x)
    close(c, x * x + x)
    np.testing.assert_array_equal(c, c2)


def test_outputs_do_not_alias_arguments():
    x = randn(2, 3)
    (out,) = run(lambda a: g.ReshapeOp(a, ty(a, (3, 2))).result, x)
    out[...] = 0
    assert np.all(x != 0)


def test_arguments_are_converted_and_checked():
    f = build([tensor_type("f32", (2,))], lambda a: g.NegOp(a).result)
    (out,) = ref.run_function(f, [np.array([1.5, 2.0])])  # float64 in, f32 used
    assert out.dtype == np.float32 and out.tolist() == [-1.5, -2.0]
    with pytest.raises(ref.ExecutionError, match=r"shape \[3\], the function needs \[2\]"):
        ref.run_function(f, [np.zeros(3, np.float32)])
    with pytest.raises(ref.ExecutionError, match="takes 1 arguments, got 2"):
        ref.run_function(f, [np.zeros(2), np.zeros(2)])
    i = build([tensor_type("i32", (2,))], lambda a: a)
    with pytest.raises(ref.ExecutionError, match="does not convert to i32"):
        ref.run_function(i, [np.zeros(2, np.float32)])


@pytest.mark.parametrize("wrap", ["plain", "fused"])
def test_unknown_op_names_the_op_and_its_location(wrap):
    def body(a):
        op = XTestOp([a], [a.type])
        loc = FileLineColLoc(StringAttr("m.model"), IntAttr(3), IntAttr(7))
        if wrap == "fused":
            loc = FusedLoc(ArrayAttr([UnknownLoc(), loc]), NoneAttr())
        op.location = loc
        return op.res[0]

    f = build([tensor_type("f32", (2,))], body)
    with pytest.raises(ref.UnsupportedOpError, match=r"^m.model:3:7: error: the reference executor does not support 'test.op'$") as info:
        ref.run_function(f, [np.zeros(2, np.float32)])
    assert isinstance(info.value, StrataError)


def test_unknown_op_without_location_names_its_position():
    f = build([tensor_type("f32", (2,))], lambda a: XTestOp([g.NegOp(a).result], [a.type]).res[0])
    with pytest.raises(ref.UnsupportedOpError, match=r"^error: .* 'test.op' \(at operation #1 of @f\)$"):
        ref.run_function(f, [np.zeros(2, np.float32)])


@irdl_op_definition
class FakeKernelOp(IRDLOperation):
    """Stand-in for a future `graph.kernel`: a region op evaluated by `run_block`."""

    name = "test_reference.kernel"
    inputs = var_operand_def()
    outputs = var_result_def()
    body = region_def()


@irdl_op_definition
class FakeYieldOp(IRDLOperation):
    name = "test_reference.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator())


def kernel_function(captures_outer: bool) -> func.FuncOp:
    """`@f(a, b) = kernel(a, b) { x + y (+ a when captures_outer) }`."""
    t = tensor_type("f32", (3,))

    def body(a, b):
        inner = Block(arg_types=[t, t])
        with ImplicitBuilder(inner) as (x, y):
            s = g.AddOp(x, y, t).result
            if captures_outer:
                s = g.AddOp(s, a, t).result
            FakeYieldOp.create(operands=[s])
        return FakeKernelOp.create(operands=[a, b], result_types=[t], regions=[Region(inner)]).results[0]

    return build([t, t], body)


def test_region_op_handler_can_run_its_block(monkeypatch):
    monkeypatch.setitem(ref.HANDLERS, FakeKernelOp, lambda op, args: ref.run_block(op.body.block, args))
    x, y = randn(3), randn(3)
    (out,) = ref.run_function(kernel_function(False), [x, y])
    close(out, x + y)


def test_region_op_handler_can_see_outer_values(monkeypatch):
    def handler(op, args, env):
        return ref.run_block(op.body.block, args, outer=env)

    monkeypatch.setitem(ref.HANDLERS, FakeKernelOp, handler)
    monkeypatch.setattr(ref, "_NEEDS_ENV", ref._NEEDS_ENV | {FakeKernelOp})
    x, y = randn(3), randn(3)
    (out,) = ref.run_function(kernel_function(True), [x, y])
    close(out, x + y + x)


def model_module(arg_names):
    """A module whose `@f` adds its input `x` and its param `b`."""
    attrs = ArrayAttr([DictionaryAttr({key: StringAttr(name)}) for key, name in arg_names])
    t = tensor_type("f32", (2,))
    f = build([t, t], lambda x, b: g.AddOp(x, b, t).result, arg_attrs=attrs)
    return ModuleOp([f])


def test_run_module_binds_by_name():
    module = model_module([(INPUT_ATTR, "x"), (PARAM_ATTR, "layer.0.b")])
    (out,) = ref.run_module(module, {"x": np.array([1.0, 2.0])}, {"layer.0.b": np.array([10.0, 20.0])})
    assert out.tolist() == [11.0, 22.0]
    with pytest.raises(ref.ExecutionError, match="no value given for param 'layer.0.b'"):
        ref.run_module(module, {"x": np.zeros(2)}, {})
    with pytest.raises(ref.ExecutionError, match="'y' is not an input"):
        ref.run_module(module, {"x": np.zeros(2), "y": np.zeros(2)}, {"layer.0.b": np.zeros(2)})


def test_run_module_needs_one_function_and_named_arguments():
    with pytest.raises(ref.ExecutionError, match="exactly one func.func, found 0"):
        ref.run_module(ModuleOp([]), {}, {})
    module = ModuleOp([build([tensor_type("f32", (2,))], lambda a: a)])
    with pytest.raises(ref.ExecutionError, match="neither a 'graph.input' nor a 'graph.param'"):
        ref.run_module(module, {}, {})


def test_numpy_dtype():
    assert ref.numpy_dtype(tensor_type("bf16", ()).element_type) == np.dtype(BF16)
    assert ref.numpy_dtype(tensor_type("f8e5m2", ()).element_type) == np.dtype(ml_dtypes.float8_e5m2)
    assert ref.numpy_dtype(tensor_type("i64", ()).element_type) == np.dtype(np.int64)


# --------------------------------------------------------------------------- fused IR


def block_function(dtype: str) -> func.FuncOp:
    """A transformer-ish block: gemm + bias + gelu, layernorm, split, causal attention, residual."""
    s, d = 4, 8
    x_t, w_t, b_t = tensor_type(dtype, (s, d)), tensor_type(dtype, (d, 2 * d)), tensor_type(dtype, (2 * d,))

    def body(x, w, b, gamma):
        h = g.MatmulOp(x, w, ty(x, (s, 2 * d))).result
        h = g.GeluOp(g.AddOp(h, b, h.type).result).result
        q, k = g.SplitOp(h, 1, [ty(x, (s, d))] * 2).outputs
        q = g.LayerNormOp(q, gamma, None, 1, 1e-5).result
        kt = g.TransposeOp(k, (1, 0), ty(x, (d, s))).result
        scores = g.MatmulOp(q, kt, ty(x, (s, s))).result
        scale = g.ConstantOp(d**-0.5, ty(x, ())).result
        scores = g.CausalMaskOp(g.MulOp(scores, scale, scores.type).result).result
        p = g.SoftmaxOp(scores, 1).result
        o = g.MatmulOp(p, k, ty(x, (s, d))).result
        return g.AddOp(o, x, x.type).result, g.ReshapeOp(o, ty(x, (s * d,))).result

    return build([x_t, w_t, b_t, tensor_type(dtype, (d,))], body)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_fused_ir_computes_exactly_what_the_graph_did(dtype):
    from xdsl.context import Context

    from strata.dialects.graph.kernel import KernelOp
    from strata.passes.fuse import FusePass

    module = ModuleOp([block_function(dtype)])
    fused = module.clone()
    FusePass(target="gpu").apply(Context(), fused)
    fused.verify()
    kinds = {op.kind.data for op in fused.walk() if isinstance(op, KernelOp)}
    assert {"gemm", "attention", "row"} <= kinds
    np_dtype = ref.NUMPY_DTYPES[dtype]
    args = [randn(4, 8).astype(np_dtype), randn(8, 16).astype(np_dtype), randn(16).astype(np_dtype),
            randn(8).astype(np_dtype)]
    want = ref.run_function(ref.model_function(module), args)
    got = ref.run_function(ref.model_function(fused), args)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.astype(np.float32), b.astype(np.float32))
