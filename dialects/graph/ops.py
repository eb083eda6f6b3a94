"""
Operations of the `graph` dialect: one op per model-language operation.

Ops are value-semantic on builtin `tensor<...>` types. Every verifier
re-checks the op's shape rule (`dialects.graph.shapes`) and dtypes, so IR
that was parsed from text is held to the same rules as IR from the frontend.
Axes are stored normalised (non-negative); window attributes are stored in
full (`strides` [h, w], `pads` [top, left, bottom, right]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from strata.dialects.graph import shapes
from strata.dialects.graph.dtypes import (
    DEQUANTIZE_DTYPES,
    DTYPES,
    FLOAT_DTYPES,
    INT_DTYPES,
    QUANTIZE_DTYPES,
    QUANTIZED_INT_DTYPES,
    accumulation_dtypes,
    dtype_name,
)
from strata.dialects.vocabulary import MESH_AXES

# --------------------------------------------------------------------------- helpers


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


def _ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _int(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)


def _check(rule, *args) -> tuple[int, ...]:
    """Run a shape rule, turning its error into a verifier error."""
    try:
        return rule(*args)
    except shapes.ShapeError as err:
        raise VerifyException(str(err)) from None


def _expect_shape(op: IRDLOperation, result: SSAValue, expected: Sequence[int]) -> None:
    got = _shape(result)
    if got != tuple(expected):
        raise VerifyException(
            f"'{op.name}' result shape {shapes.fmt(got)} should be {shapes.fmt(expected)}"
        )


def _dtype(op: IRDLOperation, value: SSAValue) -> str:
    """The strata dtype name of a tensor value; other element types do not verify."""
    try:
        return dtype_name(value.type.element_type)
    except ValueError:
        raise VerifyException(
            f"'{op.name}' element type {value.type.element_type} is not a strata dtype"
            f" ({', '.join(DTYPES)})"
        ) from None


def _expect_same_dtype(op: IRDLOperation, *values: SSAValue) -> None:
    dtypes = [_dtype(op, v) for v in values]
    if len(set(dtypes)) > 1:
        raise VerifyException(
            f"'{op.name}' operands must share one dtype, got {', '.join(dtypes)}"
        )


def _expect_float(op: IRDLOperation, value: SSAValue) -> None:
    dtype = _dtype(op, value)
    if dtype not in FLOAT_DTYPES:
        raise VerifyException(f"'{op.name}' needs a float operand, got {dtype}")


def _axis(op: IRDLOperation, axis: IntegerAttr, rank: int) -> int:
    value = axis.value.data
    if not 0 <= value < rank:
        raise VerifyException(f"'{op.name}' axis {value} is out of range for rank {rank}")
    return value


# --------------------------------------------------------------------------- constants


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """
    A tensor filled with one scalar value (model-language literals).

    `result[i] = value` for every index `i`; the value is stored as f64 and
    rounded to the result dtype when executed.

    ```mlir
    %c = graph.constant {value = 1.250000e-01 : f64} : tensor<f32>
    ```
    """

    name = "graph.constant"

    value = prop_def(FloatAttr[Float64Type])
    result = result_def(TensorType)

    traits = traits_def(Pure())
    # In the attribute dictionary, because the bare-literal syntax cannot
    # parse back the hex form that infinities print as.
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, value: float, result_type: TensorType):
        super().__init__(
            result_types=[result_type],
            properties={"value": FloatAttr(float(value), Float64Type())},
        )

    def verify_(self) -> None:
        value = self.value.value.data
        if _dtype(self, self.result) in INT_DTYPES and not (
            math.isfinite(value) and value == int(value)
        ):
            raise VerifyException(f"'graph.constant' value {value} is not an integer")


# --------------------------------------------------------------------------- elementwise


class BinaryElementwiseOp(IRDLOperation):
    """Base of broadcasting binary ops: `result = f(lhs, rhs)` with NumPy broadcasting."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = (
        "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)"
    )

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        _expect_same_dtype(self, self.lhs, self.rhs, self.result)
        _expect_shape(self, self.result, _check(shapes.broadcast, _shape(self.lhs), _shape(self.rhs)))


@irdl_op_definition
class AddOp(BinaryElementwiseOp):
    """
    `result = lhs + rhs`, broadcasting.

    ```mlir
    %r = graph.add %a, %b : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
    ```
    """

    name = "graph.add"


@irdl_op_definition
class SubOp(BinaryElementwiseOp):
    """`result = lhs - rhs`, broadcasting."""

    name = "graph.sub"


@irdl_op_definition
class MulOp(BinaryElementwiseOp):
    """`result = lhs * rhs`, broadcasting."""

    name = "graph.mul"


@irdl_op_definition
class DivOp(BinaryElementwiseOp):
    """`result = lhs / rhs`, broadcasting (integer division truncates toward zero)."""

    name = "graph.div"


@irdl_op_definition
class MaximumOp(BinaryElementwiseOp):
    """`result = max(lhs, rhs)` elementwise, broadcasting."""

    name = "graph.maximum"


@irdl_op_definition
class MinimumOp(BinaryElementwiseOp):
    """`result = min(lhs, rhs)` elementwise, broadcasting."""

    name = "graph.minimum"


@irdl_op_definition
class PowOp(BinaryElementwiseOp):
    """`result = lhs ** rhs` elementwise, broadcasting."""

    name = "graph.pow"


class UnaryElementwiseOp(IRDLOperation):
    """Base of unary ops: `result = f(input)`, same type; float only unless `ACCEPTS_INT`."""

    ACCEPTS_INT: ClassVar[bool] = False

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input)"

    def __init__(self, input: SSAValue):
        super().__init__(operands=[input], result_types=[SSAValue.get(input).type])

    def verify_(self) -> None:
        if not self.ACCEPTS_INT:
            _expect_float(self, self.input)
        else:
            _dtype(self, self.input)


@irdl_op_definition
class ReluOp(UnaryElementwiseOp):
    """`result = max(input, 0)` (floats and integers)."""

    name = "graph.relu"
    ACCEPTS_INT: ClassVar[bool] = True


@irdl_op_definition
class GeluOp(UnaryElementwiseOp):
    """`result = 0.5 * x * (1 + erf(x / sqrt(2)))` (exact GELU, ONNX default)."""

    name = "graph.gelu"


@irdl_op_definition
class SiluOp(UnaryElementwiseOp):
    """`result = x * sigmoid(x)`."""

    name = "graph.silu"


@irdl_op_definition
class SigmoidOp(UnaryElementwiseOp):
    """`result = 1 / (1 + exp(-x))`."""

    name = "graph.sigmoid"


@irdl_op_definition
class TanhOp(UnaryElementwiseOp):
    """`result = tanh(x)`."""

    name = "graph.tanh"


@irdl_op_definition
class ExpOp(UnaryElementwiseOp):
    """`result = exp(x)`."""

    name = "graph.exp"


@irdl_op_definition
class LogOp(UnaryElementwiseOp):
    """`result = log(x)` (natural logarithm)."""

    name = "graph.log"


@irdl_op_definition
class SqrtOp(UnaryElementwiseOp):
    """`result = sqrt(x)`."""

    name = "graph.sqrt"


@irdl_op_definition
class RsqrtOp(UnaryElementwiseOp):
    """`result = 1 / sqrt(x)`."""

    name = "graph.rsqrt"


@irdl_op_definition
class AbsOp(UnaryElementwiseOp):
    """`result = |x|` (floats and integers; integers wrap: `|-128|` is -128 in i8)."""

    name = "graph.abs"
    ACCEPTS_INT: ClassVar[bool] = True


@irdl_op_definition
class ErfOp(UnaryElementwiseOp):
    """`result = erf(x)`, the Gauss error function."""

    name = "graph.erf"


@irdl_op_definition
class NegOp(UnaryElementwiseOp):
    """`result = -x` (floats and integers, which wrap)."""

    name = "graph.neg"
    ACCEPTS_INT: ClassVar[bool] = True


@irdl_op_definition
class CastOp(IRDLOperation):
    """
    `result = x` converted to the result dtype (round to nearest even for
    floats, truncation toward zero for float to integer).

    ```mlir
    %r = graph.cast %x : tensor<4xf32> -> tensor<4xbf16>
    ```
    """

    name = "graph.cast"

    input = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _dtype(self, self.input)
        _dtype(self, self.result)
        _expect_shape(self, self.result, _shape(self.input))


# --------------------------------------------------------------------------- contractions


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """
    Batched matrix product with NumPy `@` semantics.

    `result[..., m, n] = sum_k lhs[..., m, k] * rhs[..., k, n]`, batch dims
    broadcast. Both operands have one dtype; the result has that dtype or an
    accumulation dtype (`dtypes.accumulation_dtypes`): `i32` for `i4`, `i8`,
    `u8` operands, whose products are summed exactly and wrapped to 32 bits
    (ONNX MatMulInteger without zero points); `f32`, `bf16` or `f16` for f8
    operands, summed in f32 and rounded once.

    ```mlir
    %c = graph.matmul %a, %b : tensor<64x32xf32>, tensor<32x16xf32> -> tensor<64x16xf32>
    ```
    """

    name = "graph.matmul"

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = (
        "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)"
    )

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        _expect_same_dtype(self, self.lhs, self.rhs)
        _expect_accumulation(self, self.lhs, self.result)
        _expect_shape(self, self.result, _check(shapes.matmul, _shape(self.lhs), _shape(self.rhs)))


def _expect_accumulation(op: IRDLOperation, operand: SSAValue, result: SSAValue) -> None:
    """The result dtype of a contraction must be one its operand dtype accumulates in."""
    got, allowed = _dtype(op, result), accumulation_dtypes(_dtype(op, operand))
    if got not in allowed:
        raise VerifyException(
            f"'{op.name}' of {_dtype(op, operand)} operands gives {' or '.join(sorted(allowed))}, not {got}"
        )


@irdl_op_definition
class Conv2DOp(IRDLOperation):
    """
    2-D convolution as ONNX Conv, NCHW input and OIHW weight.

    `result[n, o, y, x] = b[o] + sum_{c, i, j} input[n, g*C/G + c, y*sh + i*dh - pt,
    x*sw + j*dw - pl] * weight[o, c, i, j]` with `g = o / (O/G)` and zero padding.
    `input` and `weight` share one dtype; the result (and `bias`) has that
    dtype or an accumulation dtype, as for `graph.matmul`: `i32` for `i4`,
    `i8`, `u8` operands (ONNX ConvInteger, then an exact `i32` bias add).

    ```mlir
    %y = graph.conv2d %x, %w bias %b : tensor<4xf32> {strides = array<i64: 1, 1>,
        pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64}
        : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
    ```
    """

    name = "graph.conv2d"

    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)

    strides = prop_def(DenseArrayBase.constr(i64))
    pads = prop_def(DenseArrayBase.constr(i64))
    dilations = prop_def(DenseArrayBase.constr(i64))
    groups = prop_def(IntegerAttr[I64])

    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = (
        "$input `,` $weight (`bias` $bias^ `:` type($bias))? attr-dict"
        " `:` type($input) `,` type($weight) `->` type($result)"
    )

    def __init__(
        self,
        input: SSAValue,
        weight: SSAValue,
        bias: SSAValue | None,
        result_type: TensorType,
        strides: Sequence[int],
        pads: Sequence[int],
        dilations: Sequence[int],
        groups: int,
    ):
        super().__init__(
            operands=[input, weight, [bias] if bias is not None else []],
            result_types=[result_type],
            properties={
                "strides": _ints(strides),
                "pads": _ints(pads),
                "dilations": _ints(dilations),
                "groups": _int(groups),
            },
        )

    def verify_(self) -> None:
        strides, pads, dilations = (
            self.strides.get_values(),
            self.pads.get_values(),
            self.dilations.get_values(),
        )
        if len(strides) != 2 or len(pads) != 4 or len(dilations) != 2:
            raise VerifyException("'graph.conv2d' needs 2 strides, 4 pads and 2 dilations")
        _expect_same_dtype(self, self.input, self.weight)
        _expect_accumulation(self, self.input, self.result)
        if self.bias is not None:
            _expect_same_dtype(self, self.bias, self.result)
        expected = _check(
            shapes.conv2d, _shape(self.input), _shape(self.weight),
            strides, pads, dilations, self.groups.value.data,
        )
        if self.bias is not None and _shape(self.bias) != (expected[1],):
            raise VerifyException(
                f"'graph.conv2d' bias shape {shapes.fmt(_shape(self.bias))} should be [{expected[1]}]"
            )
        _expect_shape(self, self.result, expected)


# --------------------------------------------------------------------------- quantization


class QuantizationOp(IRDLOperation):
    """Base of `quantize`/`dequantize`: an input, a float `scale` and an optional `zero_point`, both broadcast to the input."""

    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    zero_point = opt_operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = (
        "$input `,` $scale `:` type($scale) (`zero_point` $zero_point^ `:` type($zero_point))?"
        " attr-dict `:` type($input) `->` type($result)"
    )

    def __init__(
        self, input: SSAValue, scale: SSAValue, zero_point: SSAValue | None, result_type: TensorType
    ):
        super().__init__(
            operands=[input, scale, [zero_point] if zero_point is not None else []],
            result_types=[result_type],
        )

    def _verify_quantization(self, quantized: SSAValue, allowed: frozenset[str], what: str) -> None:
        """Shared checks; `quantized` is the integer/f8 side, whose dtypes must be in `allowed`."""
        dtype = _dtype(self, quantized)
        if dtype not in allowed:
            raise VerifyException(
                f"'{self.name}' {what} must be one of {', '.join(sorted(allowed))}, got {dtype}"
            )
        _expect_float(self, self.scale)
        shape = _shape(self.input)
        for name, value in (("scale", self.scale), ("zero_point", self.zero_point)):
            if value is None:
                continue
            try:
                fits = shapes.broadcast(shape, _shape(value)) == shape
            except shapes.ShapeError:
                fits = False
            if not fits:
                raise VerifyException(
                    f"'{self.name}' {name} shape {shapes.fmt(_shape(value))} does not broadcast to"
                    f" the input shape {shapes.fmt(shape)}"
                )
        if self.zero_point is not None:
            if dtype not in QUANTIZED_INT_DTYPES:
                raise VerifyException(f"'{self.name}' takes a zero point only for i4, i8, u8, not {dtype}")
            _expect_same_dtype(self, self.zero_point, quantized)
        _expect_shape(self, self.result, shape)


@irdl_op_definition
class QuantizeOp(QuantizationOp):
    """
    Linear quantization, as ONNX QuantizeLinear (saturating).

    For an integer result (`i4`, `i8`, `u8`):
    `result = clip(round_half_even(input / scale) + zero_point, lo, hi)`
    with `lo..hi` the result dtype's range. For an f8 result (no zero point):
    `result = f8(input / scale)`, rounded to nearest even and saturated to
    the largest finite value. `input / scale` is computed in f32; `scale`
    and `zero_point` (of the result dtype) broadcast to the input.

    ```mlir
    %q = graph.quantize %x, %s : tensor<f32> zero_point %z : tensor<ui8>
        : tensor<4x8xf32> -> tensor<4x8xui8>
    ```
    """

    name = "graph.quantize"

    def verify_(self) -> None:
        _expect_float(self, self.input)
        self._verify_quantization(self.result, QUANTIZE_DTYPES, "result dtype")


@irdl_op_definition
class DequantizeOp(QuantizationOp):
    """
    Linear dequantization, as ONNX DequantizeLinear.

    `result = (input - zero_point) * scale`, computed in f32 (the difference
    exactly, in integers) and rounded once to the float result dtype;
    `scale` and `zero_point` (of the input dtype, only for `i4`, `i8`, `u8`)
    broadcast to the input.

    ```mlir
    %w = graph.dequantize %q, %s : tensor<8x1xf32> : tensor<8x16xi4> -> tensor<8x16xbf16>
    ```
    """

    name = "graph.dequantize"

    def verify_(self) -> None:
        _expect_float(self, self.result)
        self._verify_quantization(self.input, DEQUANTIZE_DTYPES, "input dtype")


# --------------------------------------------------------------------------- reductions


class ReductionOp(IRDLOperation):
    """Base of reductions over `axes` (sorted, non-negative), optionally keeping dims."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    axes = prop_def(DenseArrayBase.constr(i64))
    keepdims = opt_prop_def(UnitAttr)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(
        self, input: SSAValue, axes: Sequence[int], keepdims: bool, result_type: TensorType
    ):
        properties: dict[str, Attribute] = {"axes": _ints(sorted(axes))}
        if keepdims:
            properties["keepdims"] = UnitAttr()
        super().__init__(operands=[input], result_types=[result_type], properties=properties)

    def verify_(self) -> None:
        _expect_same_dtype(self, self.input, self.result)
        rank = len(_shape(self.input))
        axes = self.axes.get_values()
        if list(axes) != sorted(set(axes)) or any(not 0 <= a < rank for a in axes):
            raise VerifyException(
                f"'{self.name}' axes {list(axes)} must be sorted, distinct and in [0, {rank})"
            )
        _expect_shape(
            self, self.result, shapes.reduce(_shape(self.input), axes, self.keepdims is not None)
        )


@irdl_op_definition
class SumOp(ReductionOp):
    """`result = sum of input over axes`."""

    name = "graph.sum"


@irdl_op_definition
class MeanOp(ReductionOp):
    """`result = mean of input over axes`."""

    name = "graph.mean"


@irdl_op_definition
class ReduceMaxOp(ReductionOp):
    """`result = max of input over axes` (model-language `max`)."""

    name = "graph.reduce_max"


@irdl_op_definition
class ReduceMinOp(ReductionOp):
    """`result = min of input over axes` (model-language `min`)."""

    name = "graph.reduce_min"


# --------------------------------------------------------------------------- row-wise ops


class AxisOp(IRDLOperation):
    """Base of same-shape float ops along one `axis`."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)
    axis = prop_def(IntegerAttr[I64])

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input)"

    def __init__(self, input: SSAValue, axis: int):
        super().__init__(
            operands=[input],
            result_types=[SSAValue.get(input).type],
            properties={"axis": _int(axis)},
        )

    def verify_(self) -> None:
        _expect_float(self, self.input)
        _axis(self, self.axis, len(_shape(self.input)))


@irdl_op_definition
class SoftmaxOp(AxisOp):
    """`result = exp(x - max(x)) / sum(exp(x - max(x)))` along `axis`."""

    name = "graph.softmax"


@irdl_op_definition
class LogSoftmaxOp(AxisOp):
    """`result = x - max(x) - log(sum(exp(x - max(x))))` along `axis`."""

    name = "graph.log_softmax"


class NormOp(IRDLOperation):
    """Base of normalisations over the trailing axes `axis..`."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    scale = opt_operand_def(TensorType)
    result = result_def(T)
    axis = prop_def(IntegerAttr[I64])
    epsilon = prop_def(FloatAttr[Float64Type])

    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = (
        "$input (`scale` $scale^ `:` type($scale))? attr-dict `:` type($input)"
    )

    def _verify_norm(self, params: Sequence[SSAValue | None]) -> None:
        present = [p for p in params if p is not None]
        _expect_float(self, self.input)
        _expect_same_dtype(self, self.input, *present, self.result)
        shape = _shape(self.input)
        axis = _axis(self, self.axis, len(shape))
        expected = shapes.norm_params(shape, axis)
        for p in present:
            if _shape(p) != expected:
                raise VerifyException(
                    f"'{self.name}' parameter shape {shapes.fmt(_shape(p))} should be"
                    f" {shapes.fmt(expected)} (input shape from axis {axis})"
                )
        _expect_shape(self, self.result, shape)


@irdl_op_definition
class LayerNormOp(NormOp):
    """
    Layer normalisation over axes `axis..` (ONNX LayerNormalization).

    `result = (x - mean) / sqrt(var + epsilon) * scale + bias`, `mean` and
    biased `var` taken over the trailing axes; `scale`, `bias` optional.

    ```mlir
    %y = graph.layernorm %x scale %g : tensor<8xf32> bias %b : tensor<8xf32>
        {axis = 1 : i64, epsilon = 1.000000e-05 : f64} : tensor<4x8xf32>
    ```
    """

    name = "graph.layernorm"

    input = operand_def(NormOp.T)
    scale = opt_operand_def(TensorType)
    bias = opt_operand_def(TensorType)

    assembly_format = (
        "$input (`scale` $scale^ `:` type($scale))? (`bias` $bias^ `:` type($bias))?"
        " attr-dict `:` type($input)"
    )

    def __init__(
        self,
        input: SSAValue,
        scale: SSAValue | None,
        bias: SSAValue | None,
        axis: int,
        epsilon: float,
    ):
        super().__init__(
            operands=[input, [scale] if scale else [], [bias] if bias else []],
            result_types=[SSAValue.get(input).type],
            properties={"axis": _int(axis), "epsilon": FloatAttr(epsilon, Float64Type())},
        )

    def verify_(self) -> None:
        self._verify_norm([self.scale, self.bias])


@irdl_op_definition
class RmsNormOp(NormOp):
    """
    RMS normalisation over axes `axis..`.

    `result = x / sqrt(mean(x^2) + epsilon) * scale`, `scale` optional.
    """

    name = "graph.rmsnorm"

    def __init__(self, input: SSAValue, scale: SSAValue | None, axis: int, epsilon: float):
        super().__init__(
            operands=[input, [scale] if scale else []],
            result_types=[SSAValue.get(input).type],
            properties={"axis": _int(axis), "epsilon": FloatAttr(epsilon, Float64Type())},
        )

    def verify_(self) -> None:
        self._verify_norm([self.scale])


@irdl_op_definition
class CausalMaskOp(IRDLOperation):
    """
    Causal mask on the last two axes `[..., S, T]`.

    `result[..., i, j] = -inf if j > i + (T - S) else x[..., i, j]`.
    """

    name = "graph.causal_mask"

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input)"

    def __init__(self, input: SSAValue):
        super().__init__(operands=[input], result_types=[SSAValue.get(input).type])

    def verify_(self) -> None:
        _expect_float(self, self.input)
        _check(shapes.causal_mask, _shape(self.input))


# --------------------------------------------------------------------------- data movement


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """
    Axis permutation: `result[i_perm[0], ..., i_perm[r-1]]`, i.e.
    `result.shape[d] = input.shape[perm[d]]` (NumPy `transpose(x, perm)`).
    """

    name = "graph.transpose"

    input = operand_def(TensorType)
    result = result_def(TensorType)
    perm = prop_def(DenseArrayBase.constr(i64))

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, perm: Sequence[int], result_type: TensorType):
        super().__init__(
            operands=[input], result_types=[result_type], properties={"perm": _ints(perm)}
        )

    def verify_(self) -> None:
        _expect_same_dtype(self, self.input, self.result)
        _expect_shape(
            self, self.result, _check(shapes.transpose, _shape(self.input), self.perm.get_values())
        )


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Row-major reshape to the result type's shape (same element count)."""

    name = "graph.reshape"

    input = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _expect_same_dtype(self, self.input, self.result)
        _check(shapes.reshape, _shape(self.input), _shape(self.result))


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Join `inputs` along `axis`: `result = concatenate(inputs, axis)`."""

    name = "graph.concat"

    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$inputs attr-dict `:` type($inputs) `->` type($result)"

    def __init__(self, inputs: Sequence[SSAValue], axis: int, result_type: TensorType):
        super().__init__(
            operands=[inputs], result_types=[result_type], properties={"axis": _int(axis)}
        )

    def verify_(self) -> None:
        if not self.inputs:
            raise VerifyException("'graph.concat' needs at least one operand")
        _expect_same_dtype(self, *self.inputs, self.result)
        axis = _axis(self, self.axis, len(_shape(self.inputs[0])))
        _expect_shape(
            self, self.result, _check(shapes.concat, [_shape(v) for v in self.inputs], axis)
        )


@irdl_op_definition
class SliceOp(IRDLOperation):
    """`result = input[..., start:end, ...]` along `axis`."""

    name = "graph.slice"

    input = operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])
    start = prop_def(IntegerAttr[I64])
    end = prop_def(IntegerAttr[I64])

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, axis: int, start: int, end: int, result_type: TensorType):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"axis": _int(axis), "start": _int(start), "end": _int(end)},
        )

    def verify_(self) -> None:
        _expect_same_dtype(self, self.input, self.result)
        shape = _shape(self.input)
        axis = _axis(self, self.axis, len(shape))
        _expect_shape(
            self,
            self.result,
            _check(shapes.slice_, shape, axis, self.start.value.data, self.end.value.data),
        )


@irdl_op_definition
class SplitOp(IRDLOperation):
    """Split `input` into equal parts along `axis`, one result per part."""

    name = "graph.split"

    input = operand_def(TensorType)
    outputs = var_result_def(TensorType)
    axis = prop_def(IntegerAttr[I64])

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($outputs)"

    def __init__(self, input: SSAValue, axis: int, result_types: Sequence[TensorType]):
        super().__init__(
            operands=[input], result_types=[result_types], properties={"axis": _int(axis)}
        )

    def verify_(self) -> None:
        if not self.outputs:
            raise VerifyException("'graph.split' needs at least one result")
        _expect_same_dtype(self, self.input, *self.outputs)
        shape = _shape(self.input)
        axis = _axis(self, self.axis, len(shape))
        expected = _check(shapes.split, shape, len(self.outputs), axis)
        for out in self.outputs:
            _expect_shape(self, out, expected)


@irdl_op_definition
class GatherOp(IRDLOperation):
    """
    Embedding lookup: `result[i..., j...] = table[ids[i...], j...]`.

    As ONNX Gather, a negative id counts from the end (-1 is the last row).
    `strata run` refuses an id outside `[-V, V)` (the reference and the loop
    interpreter); native code (`--backend mlir`) does not check and clamps
    such an id into `[0, V)`.
    """

    name = "graph.gather"

    table = operand_def(TensorType)
    ids = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = (
        "$table `,` $ids attr-dict `:` type($table) `,` type($ids) `->` type($result)"
    )

    def __init__(self, table: SSAValue, ids: SSAValue, result_type: TensorType):
        super().__init__(operands=[table, ids], result_types=[result_type])

    def verify_(self) -> None:
        if _dtype(self, self.ids) not in INT_DTYPES:
            raise VerifyException("'graph.gather' ids must have an integer dtype")
        _expect_same_dtype(self, self.table, self.result)
        _expect_shape(self, self.result, _check(shapes.gather, _shape(self.table), _shape(self.ids)))


# --------------------------------------------------------------------------- collectives


class CollectiveOp(IRDLOperation):
    """
    Base of the collectives of a sharded program (`shard`): every device of
    one group along mesh `axis` (`tp` or `dp`, `devices` of them) runs the
    op at the same point of the same program, each on its own `input`.
    Not `Pure`: it communicates, so no rewrite may drop or merge it.
    """

    input = operand_def(TensorType)
    result = result_def(TensorType)
    axis = prop_def(StringAttr)
    devices = prop_def(IntegerAttr[I64])

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def verify_(self) -> None:
        verify_collective(self, _shape(self.input), _shape(self.result))
        _expect_same_dtype(self, self.input, self.result)


def verify_collective(op: IRDLOperation, source: Sequence[int], dest: Sequence[int]) -> None:
    """The checks every collective shares, on tensors or buffers (`loop`, hardware dialects)."""
    if op.axis.data not in MESH_AXES:
        raise VerifyException(f"'{op.name}' axis must be one of {', '.join(MESH_AXES)}, got '{op.axis.data}'")
    devices = op.devices.value.data
    if devices < 2:
        raise VerifyException(f"'{op.name}' runs on a group of at least 2 devices, got {devices}")
    if hasattr(op, "dim"):
        groups = op.groups.value.data
        dim = op.dim.value.data
        # A reduce-scatter cuts its operand into devices x groups blocks; an all-gather's is one device's block.
        scatters = op.name.endswith(".reduce_scatter")
        blocks = groups * devices if scatters else groups
        if not 0 <= dim < len(source) or groups < 1 or source[dim] % blocks:
            raise VerifyException(
                f"'{op.name}' dim {dim} and groups {groups} do not fit the operand shape {shapes.fmt(source)}"
                + (f" over {devices} devices" if scatters else "")
            )
        expected = shapes.scattered(source, dim, devices) if scatters else shapes.gathered(source, dim, devices)
    else:
        expected = tuple(source)
    if tuple(dest) != tuple(expected):
        raise VerifyException(f"'{op.name}' result shape must be {shapes.fmt(expected)}, got {shapes.fmt(dest)}")


@irdl_op_definition
class AllReduceOp(CollectiveOp):
    """`result = sum of input over the devices of the group` (each gets the sum)."""

    name = "graph.all_reduce"

    def __init__(self, input: SSAValue, axis: str, devices: int):
        super().__init__(
            operands=[input], result_types=[input.type],
            properties={"axis": StringAttr(axis), "devices": _int(devices)},
        )


@irdl_op_definition
class AllGatherOp(CollectiveOp):
    """
    `result` = the whole tensor whose blocks along `dim` the group's devices
    hold, in device order; with `groups` > 1 each device holds its block of
    each of `groups` equal parts (see `strata.split`), and the result puts
    every part back together in turn.
    """

    name = "graph.all_gather"

    dim = prop_def(IntegerAttr[I64])
    groups = prop_def(IntegerAttr[I64])

    def __init__(self, input: SSAValue, axis: str, devices: int, dim: int, groups: int = 1):
        type_ = input.type
        result = TensorType(type_.element_type, shapes.gathered(type_.get_shape(), dim, devices))
        super().__init__(
            operands=[input], result_types=[result],
            properties={"axis": StringAttr(axis), "devices": _int(devices), "dim": _int(dim), "groups": _int(groups)},
        )


@irdl_op_definition
class ReduceScatterOp(CollectiveOp):
    """
    `result` = device `r`'s block along `dim` of the sum of `input` over the
    group's devices (`all_reduce`, then each keeps its block, as
    `strata.split` cuts one; `all_gather`'s inverse in shape): with `groups`
    > 1 its block of each of `groups` equal parts. Sequence parallelism
    (`shard{sp=true}`) puts it where a row-parallel GEMM's partial sums meet.
    """

    name = "graph.reduce_scatter"

    dim = prop_def(IntegerAttr[I64])
    groups = prop_def(IntegerAttr[I64])

    def __init__(self, input: SSAValue, axis: str, devices: int, dim: int, groups: int = 1):
        type_ = input.type
        result = TensorType(type_.element_type, shapes.scattered(type_.get_shape(), dim, devices))
        super().__init__(
            operands=[input], result_types=[result],
            properties={"axis": StringAttr(axis), "devices": _int(devices), "dim": _int(dim), "groups": _int(groups)},
        )


# --------------------------------------------------------------------------- pooling


class Pool2DOp(IRDLOperation):
    """Base of 2-D windowed pooling on NCHW inputs (ONNX, floor mode)."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    kernel = prop_def(DenseArrayBase.constr(i64))
    strides = prop_def(DenseArrayBase.constr(i64))
    pads = prop_def(DenseArrayBase.constr(i64))

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(
        self,
        input: SSAValue,
        kernel: Sequence[int],
        strides: Sequence[int],
        pads: Sequence[int],
        result_type: TensorType,
    ):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"kernel": _ints(kernel), "strides": _ints(strides), "pads": _ints(pads)},
        )

    def verify_(self) -> None:
        kernel, strides, pads = (
            self.kernel.get_values(),
            self.strides.get_values(),
            self.pads.get_values(),
        )
        if len(kernel) != 2 or len(strides) != 2 or len(pads) != 4:
            raise VerifyException(f"'{self.name}' needs 2 kernel sizes, 2 strides and 4 pads")
        _expect_same_dtype(self, self.input, self.result)
        _expect_shape(
            self, self.result, _check(shapes.pool2d, _shape(self.input), kernel, strides, pads)
        )


@irdl_op_definition
class MaxPool2DOp(Pool2DOp):
    """Max over each window; padding never wins (ONNX MaxPool)."""

    name = "graph.maxpool2d"


@irdl_op_definition
class AvgPool2DOp(Pool2DOp):
    """Mean over each window; padded cells are not counted (ONNX AveragePool)."""

    name = "graph.avgpool2d"


@irdl_op_definition
class GlobalAvgPoolOp(IRDLOperation):
    """`result[n, c, 0, 0] = mean(input[n, c, :, :])`."""

    name = "graph.global_avgpool"

    input = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        shape = _shape(self.input)
        if len(shape) != 4:
            raise VerifyException(
                f"'graph.global_avgpool' input must be [N, C, H, W], got {shapes.fmt(shape)}"
            )
        _expect_same_dtype(self, self.input, self.result)
        _expect_shape(self, self.result, (shape[0], shape[1], 1, 1))
