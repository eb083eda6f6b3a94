"""
Builders of upstream MLIR for `export-mlir`: scalars (`arith`, `math`) and
tensors (`linalg.generic`, `linalg.fill`, `tensor.*`), and the lowering of
every `graph` op on tensors to them.

The numeric rules are the reference executor's (`compiler/execution/reference.py`):
float ops compute in f32 whatever the operand dtype and round the result to
the op's dtype once; `erf`/`gelu` use a polynomial (absolute error under
1.2e-7; the reference computes them in f64); integer arithmetic wraps,
integer division truncates toward zero and gives 0 for a zero divisor; float
to integer truncates toward zero, saturates and maps NaN to 0. Pure IR
construction (NumPy and ml_dtypes only round f8 constants, `f8_bits`).

Quantized integers: MLIR's `arith` takes signless integers only, so `u8`
and `i4` values are held in signless `i8` (`storage_type`: a `u8` as its
byte, an `i4` as one byte per value, -8..7). `elem` gives the storage type;
the ops whose meaning depends on the dtype (`cast`, `quantize`,
`dequantize`, `matmul`, `conv2d`, `relu`, `abs`, `max`/`min`) read the
logical one from the graph op (`logical`) and convert with
`Emitter.convert_logical`; integer results in `i4` wrap modulo 16 as the
reference's do. `quantize` and `dequantize` are ONNX's (round half to even,
saturation), exactly as `compiler/execution/reference.py` computes them.

f8 is emulated (LLVM has no f8 types): an f8 value is held as its bits in
`i8` and computed in f32; `Emitter.f8_to_f32` decodes the bits exactly and
`Emitter.f32_to_f8` rounds to nearest even by integer arithmetic on the f32
bits (an overflow gives NaN in e4m3fn, infinity in e5m2, as ml_dtypes;
`quantize` saturates first). Elementwise ops, casts, `quantize`,
`dequantize`, GEMMs and convs read and write f8; data movement (loads,
stores, reshapes, slices) moves the bits; reductions, softmax, norms and
pools of f8 values are an `ExportError` (cast them to f32 first).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from xdsl.dialects import arith, scf, tensor, vector
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    BFloat16Type,
    BoolAttr,
    DenseArrayBase,
    Float8E4M3FNType,
    Float8E5M2Type,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    Signedness,
    TensorType,
    VectorType,
    f32,
    f64,
    i32,
    i64,
)
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.dialects.linalg.ops import FillOp, GenericOp, IndexOp, YieldOp
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, prop_def, var_operand_def
from xdsl.ir.affine import AffineExpr, AffineMap

from strata.dialects.graph import ops as g
from strata.dialects.hardware.cpu import VECTOR_LANES, by_rows, row_lanes

FLOAT_WIDTH: dict[type, int] = {
    Float8E4M3FNType: 8, Float8E5M2Type: 8, Float16Type: 16, BFloat16Type: 16, Float32Type: 32, Float64Type: 64,
}


class ExportError(Exception):
    """IR that `export-mlir` cannot express in upstream MLIR."""


@irdl_op_definition
class PrefetchOp(IRDLOperation):
    """
    Upstream MLIR's `memref.prefetch` (xDSL has none): a hint that the
    element `memref[indices]` (its cache line) will be read (or written,
    `isWrite`) soon, kept at cache level `localityHint` (3: all levels, 0:
    none). It changes no value; LLVM lowers it to `llvm.prefetch` (on x86
    `prefetcht0`...`prefetchnta`, which never fault). Printed in the generic
    form, which `mlir-opt` parses.
    """

    name = "memref.prefetch"

    memref = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    is_write = prop_def(BoolAttr, prop_name="isWrite")
    locality_hint = prop_def(IntegerAttr, prop_name="localityHint")
    is_data_cache = prop_def(BoolAttr, prop_name="isDataCache")

    def __init__(self, ref: SSAValue, indices: Sequence[SSAValue], write: bool = False, locality: int = 3):
        super().__init__(operands=[ref, list(indices)], properties={
            "isWrite": BoolAttr.from_bool(write), "localityHint": IntegerAttr(locality, i32),
            "isDataCache": BoolAttr.from_bool(True),
        })


def is_float(t: Attribute) -> bool:
    """A float type, or a vector of floats (`Emitter.row_elementwise` builds bodies on vectors)."""
    return type(t.element_type if isinstance(t, VectorType) else t) in FLOAT_WIDTH


def is_index(t: Attribute) -> bool:
    return isinstance(t, IndexType)


def compute_type(t: Attribute) -> Attribute:
    """What a value of element type `t` is computed in: f32 for every float dtype."""
    return f32 if is_float(t) and not isinstance(t, Float64Type) else t


def shape(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


def is_unsigned(t: Attribute) -> bool:
    return isinstance(t, IntegerType) and t.signedness.data == Signedness.UNSIGNED


def is_i4(t: Attribute) -> bool:
    return isinstance(t, IntegerType) and t.width.data == 4


def is_f8(t: Attribute) -> bool:
    return isinstance(t, (Float8E4M3FNType, Float8E5M2Type))


def is_held(t: Attribute) -> bool:
    """Whether exported IR holds elements of type `t` in another type (`storage_type`)."""
    return is_f8(t) or (isinstance(t, IntegerType) and (is_i4(t) or t.signedness.data != Signedness.SIGNLESS))


def storage_type(t: Attribute) -> Attribute:
    """The type holding an element of type `t` in exported IR: signless `i8` for `u8`, `i4` and f8 (its bits), else `t`."""
    if is_held(t):
        return IntegerType(max(8, t.width.data) if isinstance(t, IntegerType) else 8)
    return t


F8_FORMATS: dict[type, tuple[int, int, int, bool]] = {
    # exponent bits, mantissa bits, largest finite code, infinities
    Float8E4M3FNType: (4, 3, 0x7E, False),
    Float8E5M2Type: (5, 2, 0x7B, True),
}
"""The f8 formats as bit fields (OCP FP8: e4m3fn has no infinities and one NaN code per sign, 0x7F)."""


def f8_bits(value: float, t: Attribute) -> int:
    """The (signed i8) bits of `value` rounded to f8 type `t` as the reference rounds it (ml_dtypes)."""
    import ml_dtypes
    import numpy as np

    dtype = ml_dtypes.float8_e4m3fn if isinstance(t, Float8E4M3FNType) else ml_dtypes.float8_e5m2
    return int(np.asarray(np.float32(value)).astype(dtype).view(np.int8))


def elem(value: SSAValue) -> Attribute:
    """The element type of `value` as exported IR holds it (`storage_type`)."""
    return storage_type(value.type.element_type)


def logical(value: SSAValue) -> Attribute:
    """The element type of a graph value as the model declares it (`u8`, `i4`, ...)."""
    return value.type.element_type


def ttype(shape_: Sequence[int], element_type: Attribute) -> TensorType:
    return TensorType(element_type, list(shape_))


def dim(i: int) -> AffineExpr:
    return AffineExpr.dimension(i)


def zero() -> AffineExpr:
    return AffineExpr.constant(0)


def coalesced_dims(out: Sequence[int], operands: Sequence[Sequence[int]]) -> list[list[int]]:
    """
    The dims of an elementwise op over `out` in groups of adjacent dims that every operand (NumPy-
    broadcast to `out`) reads alike, all whole or all broadcast (a dim of extent 1 joins any group):
    each group can be one loop. A per-channel scale `[C, 1, 1]` over `[N, C, H, W]`: [[0, 1], [2, 3]].
    """
    padded = [_padded(s, len(out)) for s in operands]
    groups: list[list[int]] = []
    kinds: tuple | None = None  # how the operands read the current group's dims of extent over 1
    for d, extent in enumerate(out):
        here = kinds if extent == 1 else tuple(p[d] == extent for p in padded)
        if groups and kinds in (None, here):
            groups[-1].append(d)
        else:
            groups.append([d])
        kinds = here
    return groups


def _padded(operand: Sequence[int], rank: int) -> list[int]:
    return [1] * (rank - len(operand)) + list(operand)


def _collapse(operand: Sequence[int], rank: int, groups: Sequence[Sequence[int]]) -> list[int]:
    """`operand`'s shape with `groups` of its (broadcast-padded) dims collapsed into one each."""
    padded = _padded(operand, rank)
    return [math.prod(padded[d] for d in g) for g in groups]


def broadcast_map(operand: Sequence[int], out: Sequence[int]) -> AffineMap:
    """NumPy broadcasting of an `operand`-shaped input into an `out`-shaped loop nest."""
    lead = len(out) - len(operand)
    return AffineMap(len(out), 0, tuple(
        zero() if d == 1 and out[lead + j] != 1 else dim(lead + j) for j, d in enumerate(operand)
    ))


def identity(rank: int) -> AffineMap:
    return AffineMap.identity(rank)


def lowest(t: Attribute) -> float | int:
    """The identity of a max reduction in type `t`."""
    return float("-inf") if is_float(t) else -(2 ** (t.width.data - 1))


def highest(t: Attribute) -> float | int:
    return float("inf") if is_float(t) else 2 ** (t.width.data - 1) - 1


PARALLEL = IteratorTypeAttr.parallel()
REDUCTION = IteratorTypeAttr.reduction()


Prefetch = Callable[["Emitter", SSAValue, SSAValue, int, int], None]
"""`prefetch(emitter, strip, block, blocks, strips)`: what `Emitter.vector_matmul` emits before each row block."""

Widen = Callable[["Emitter", SSAValue, SSAValue], SSAValue]
"""Converts a row vector of a GEMM's `b` read at a column index to f32 (`Emitter.vector_matmul`)."""


class Emitter:
    """Appends ops to `block`; every op gets `location`."""

    def __init__(self, block: Block, location: Attribute | None = None):
        self.block = block
        self.location = location

    def at(self, block: Block) -> Emitter:
        return Emitter(block, self.location)

    def add(self, op: Operation) -> Operation:
        if self.location is not None:
            op.location = self.location
        self.block.add_op(op)
        return op

    def v(self, op: Operation) -> SSAValue:
        return self.add(op).results[0]

    # ------------------------------------------------------------------ scalars

    def index(self, value: int) -> SSAValue:
        return self.v(arith.ConstantOp(IntegerAttr(value, IndexType())))

    def scalar(self, value: float | int, t: Attribute) -> SSAValue:
        if isinstance(t, VectorType):
            return self.v(vector.BroadcastOp(self.scalar(value, t.element_type), t))
        if is_float(t):
            return self.v(arith.ConstantOp(FloatAttr(float(value), t)))
        if isinstance(t, IntegerType):
            # A `u8` 200 is the byte 0xC8: its signless i8 value is -56.
            bits = t.width.data
            value = (int(value) + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
        return self.v(arith.ConstantOp(IntegerAttr(int(value), t)))

    def add_(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.AddfOp(a, b) if is_float(a.type) else arith.AddiOp(a, b))

    def sub(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.SubfOp(a, b) if is_float(a.type) else arith.SubiOp(a, b))

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.MulfOp(a, b) if is_float(a.type) else arith.MuliOp(a, b))

    def div(self, a: SSAValue, b: SSAValue) -> SSAValue:
        if is_float(a.type):
            return self.v(arith.DivfOp(a, b))
        # Truncating division; x / 0 is 0.
        zero_, one = self.scalar(0, a.type), self.scalar(1, a.type)
        is_zero = self.v(arith.CmpiOp(b, zero_, "eq"))
        safe = self.v(arith.SelectOp(is_zero, one, b))
        return self.v(arith.SelectOp(is_zero, zero_, self.v(arith.DivSIOp(a, safe))))

    def max_(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.MaximumfOp(a, b) if is_float(a.type) else arith.MaxSIOp(a, b))

    def min_(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.MinimumfOp(a, b) if is_float(a.type) else arith.MinSIOp(a, b))

    def neg(self, a: SSAValue) -> SSAValue:
        return self.v(arith.NegfOp(a)) if is_float(a.type) else self.sub(self.scalar(0, a.type), a)

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.SelectOp(cond, a, b))

    def cmpf(self, a: SSAValue, b: SSAValue, pred: str) -> SSAValue:
        return self.v(arith.CmpfOp(a, b, pred))

    def cmpi(self, a: SSAValue, b: SSAValue, pred: str) -> SSAValue:
        return self.v(arith.CmpiOp(a, b, pred))

    def and_(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.v(arith.AndIOp(a, b))

    def exp(self, a: SSAValue, floor: float | None = None) -> SSAValue:
        """
        e^a. In f32 without libm or libmvec (`EXP_COEFFICIENTS`): glibc's vector `expf` sends every
        lane whose result is not a normal float (a < -87.3: a softmax over spread scores, a masked
        score, a sigmoid of a large input) to its scalar `expf`, one call per lane; measured, a
        softmax of 8 x 257 scores with a spread of a few hundred took 21.8 us where scores of
        spread 1 took 3.7 (the Zen 4 guest, 2026-12-07). Here a is clamped to [-104, 88.8] (where
        e^a rounds to 0 and to infinity), split as n ln 2 + r with |r| <= ln 2 / 2 (Cody and
        Waite's two-part ln 2), e^r a degree-7 polynomial and 2^n two exponent-built factors of
        2^(n/2), so that results under the normal range come out subnormal, rounded once: within 2
        ulp of the correctly rounded e^a. NaN stays NaN. Other float types: `math.exp`.

        With a `floor` (at least `EXP_FLUSH_BELOW`: a softmax's exponentials, which it then
        divides or multiplies), e^a is 0 for a < floor and no operation makes or reads a
        subnormal: on Intel cores a multiply or divide that does takes a microcode assist of about
        150 clocks a vector. Measured (the Granite Rapids guest, 2026-12-08, 1 thread): a bf16
        softmax of 8 x 257 scores of spread 200 took 19.4 us with subnormals, 3.7 us without (and
        with scores of spread 2); a multiply with a subnormal operand or result 4.1 ns an element,
        0.04 without; an add 0.04 either way. A softmax's probability so flushed is under its row's
        length times 2^-126, far inside any tolerance relative to the row's largest.
        """
        if a.type != f32 and like(a.type, f32) != a.type:
            return self.v(mathd.ExpOp(a))
        i32 = like(a.type, IntegerType(32))
        if floor is not None:
            # Clamped to a normal result first, so the polynomial makes none, then set to 0.
            tiny = self.cmpf(a, self.scalar(floor, a.type), "olt")
            whole = self.exp(self.max_(a, self.scalar(floor, a.type)))
            return self.select(tiny, self.scalar(0.0, a.type), whole)
        x = self.min_(self.max_(a, self.scalar(-104.0, a.type)), self.scalar(88.8, a.type))
        # n = round(x / ln 2): adding 1.5 * 2^23 leaves it in the float's low mantissa bits.
        shifted = self.add_(self.mul(x, self.scalar(1.4426950408889634, a.type)), self.scalar(INTEGER_BIAS, a.type))
        n_float = self.sub(shifted, self.scalar(INTEGER_BIAS, a.type))
        n = self.sub(self.v(arith.BitcastOp(shifted, i32)), self.scalar(INTEGER_BIAS_BITS, i32))
        r = self.sub(self.sub(x, self.mul(n_float, self.scalar(0.693359375, a.type))),
                     self.mul(n_float, self.scalar(-2.12194440e-4, a.type)))
        poly = self.scalar(EXP_COEFFICIENTS[-1], a.type)
        for c in reversed(EXP_COEFFICIENTS[:-1]):
            poly = self.add_(self.scalar(c, a.type), self.mul(r, poly))
        half = self.v(arith.ShRSIOp(n, self.scalar(1, i32)))

        def power_of_two(k: SSAValue) -> SSAValue:
            biased = self.v(arith.ShLIOp(self.add_(k, self.scalar(127, i32)), self.scalar(23, i32)))
            return self.v(arith.BitcastOp(biased, a.type))

        return self.mul(self.mul(poly, power_of_two(half)), power_of_two(self.sub(n, half)))

    def sqrt(self, a: SSAValue) -> SSAValue:
        return self.v(mathd.SqrtOp(a))

    def pow_(self, a: SSAValue, b: SSAValue) -> SSAValue:
        if is_float(a.type):
            return self.v(mathd.PowFOp(a, b))
        # A negative exponent gives the truncated real result: 1 for base 1,
        # +-1 for base -1, else 0 (reference `_int_pow`).
        t = a.type
        zero_, one, minus_one = self.scalar(0, t), self.scalar(1, t), self.scalar(-1, t)
        negative = self.cmpi(b, zero_, "slt")
        power = self.v(mathd.IPowIOp(a, self.select(negative, zero_, b)))
        odd = self.cmpi(self.v(arith.AndIOp(b, one)), zero_, "ne")
        frac = self.select(
            self.cmpi(a, one, "eq"), one,
            self.select(self.cmpi(a, minus_one, "eq"), self.select(odd, minus_one, one), zero_),
        )
        return self.select(negative, frac, power)

    def convert(self, x: SSAValue, to: Attribute) -> SSAValue:
        """`x` in element type `to`, with the reference's conversion rules."""
        src = x.type
        if src == to:
            return x
        if is_index(src) or is_index(to):
            return self.v(arith.IndexCastOp(x, to))
        if is_float(src) and is_float(to):
            ws, wt = FLOAT_WIDTH[type(src)], FLOAT_WIDTH[type(to)]
            if isinstance(src, BFloat16Type) and wt == 32:
                return self.widen_bf16(x)
            if ws < wt:
                return self.v(arith.ExtFOp(x, to))
            if ws == 64 and wt < 32:
                # No f64 -> 16-bit conversion in libgcc (__truncdfbf2): round
                # to f32 with round-to-odd, then to `to`; f32 keeps enough
                # bits that this rounds once, as a direct conversion does.
                return self.convert(self._to_f32_odd(x), to)
            if ws == 32 and isinstance(to, BFloat16Type):
                i16 = IntegerType(16)
                upper = self.v(arith.ShRUIOp(self.bf16_bits(x), self.scalar(16, IntegerType(32))))
                return self.v(arith.BitcastOp(self.v(arith.TruncIOp(upper, i16)), to))
            if ws > wt:
                return self.v(arith.TruncFOp(x, to))
            return self.convert(self.convert(x, f32), to)
        if is_float(to):
            return self.v(arith.SIToFPOp(x, to))
        if is_float(src):
            # Truncate toward zero, saturate, NaN -> 0; decided in f64, where
            # every bound is exact.
            wide = self.convert(x, f64)
            bits = to.width.data
            big = self.cmpf(wide, self.scalar(2.0 ** (bits - 1), f64), "oge")
            small = self.cmpf(wide, self.scalar(-(2.0 ** (bits - 1)), f64), "olt")
            nan = self.cmpf(wide, wide, "uno")
            bad = self.v(arith.OrIOp(self.v(arith.OrIOp(big, small)), nan))
            safe = self.select(bad, self.scalar(0.0, f64), wide)
            value = self.v(arith.FPToSIOp(safe, to))
            value = self.select(big, self.scalar(highest(to), to), value)
            value = self.select(small, self.scalar(lowest(to), to), value)
            return self.select(nan, self.scalar(0, to), value)
        if src.width.data < to.width.data:
            return self.v(arith.ExtSIOp(x, to))
        return self.v(arith.TruncIOp(x, to))

    def widen_bf16(self, x: SSAValue) -> SSAValue:
        """
        bf16 `x` (or a vector of them) as f32, its upper half: a shift, which LLVM vectorises at
        full width (its `fpext` from bfloat goes 4 lanes at a time on AVX-512).
        """
        half = self.v(arith.BitcastOp(x, like(x.type, IntegerType(16))))
        if isinstance(x.type, VectorType):
            return self.v(arith.BitcastOp(self.into_upper_bits(half), like(x.type, f32)))
        i32 = IntegerType(32)
        bits = self.v(arith.ExtUIOp(half, i32))
        return self.v(arith.BitcastOp(self.v(arith.ShLIOp(bits, self.scalar(16, i32))), f32))

    def into_upper_bits(self, x: SSAValue) -> SSAValue:
        """
        A vector of i8 or i16 `x` as i32s holding each element in their upper bits, the rest zero
        (`x << 24`, `x << 16`): zeros interleaved below each element by a `vector.shuffle`, read
        as i32s (little-endian). xDSL's `arith.extsi`/`extui` take no vectors.
        """
        lanes = x.type.get_shape()[0]
        ratio = 32 // x.type.element_type.width.data
        zeros = self.scalar(0, x.type)
        mask = [index for i in range(lanes) for index in ([i] * (ratio - 1) + [lanes + i])]
        spread = self.v(vector.ShuffleOp(zeros, x, DenseArrayBase.from_list(i64, mask),
                                         result_type=VectorType(x.type.element_type, [lanes * ratio])))
        return self.v(vector.BitcastOp(spread, VectorType(IntegerType(32), [lanes])))

    def bf16_bits(self, x: SSAValue, never_nan: bool = False) -> SSAValue:
        """
        f32 `x` (or a vector of them) rounded to bf16 as the reference (ml_dtypes) rounds it, as
        the i32 whose upper half is the bf16 and lower half zero (the bits of its f32 value): to
        nearest, ties to even, subnormals kept, NaN the quiet NaN of its sign. In integer
        operations only (the NaN test too: `arith.cmpf` in xDSL gives no vector), which LLVM
        vectorises at full width; its `fptrunc` to bfloat goes 4 lanes at a time on AVX-512.
        `never_nan`: the caller knows `x` is no NaN (infinities round to themselves): no NaN test.
        """
        i32 = like(x.type, IntegerType(32))
        bits = self.v(arith.BitcastOp(x, i32))
        odd = self.and_(self.v(arith.ShRUIOp(bits, self.scalar(16, i32))), self.scalar(1, i32))
        rounded = self.add_(bits, self.add_(self.scalar(0x7FFF, i32), odd))
        if never_nan:
            return self.and_(rounded, self.scalar(-0x10000, i32))
        sign = self.and_(bits, self.scalar(-0x80000000, i32))
        nan = self.v(arith.OrIOp(sign, self.scalar(0x7FC00000, i32)))
        # All ones where |x| is above infinity's bits (a NaN), else zero.
        magnitude = self.and_(bits, self.scalar(0x7FFFFFFF, i32))
        is_nan = self.v(arith.ShRSIOp(self.sub(self.scalar(0x7F800000, i32), magnitude), self.scalar(31, i32)))
        keep = self.v(arith.XOrIOp(is_nan, self.scalar(-1, i32)))
        upper = self.v(arith.OrIOp(self.and_(rounded, keep), self.and_(nan, is_nan)))
        return self.and_(upper, self.scalar(-0x10000, i32))

    def _to_f32_odd(self, x: SSAValue) -> SSAValue:
        """f64 -> f32 rounding to odd: toward zero, lowest bit set when inexact."""
        i32 = IntegerType(32)
        near = self.v(arith.TruncFOp(x, f32))
        back = self.v(arith.ExtFOp(near, f64))
        bits = self.v(arith.BitcastOp(near, i32))
        # Nearest rounding went away from zero: step back one ulp toward zero.
        overshoot = self.cmpf(self.v(mathd.AbsFOp(back)), self.v(mathd.AbsFOp(x)), "ogt")
        toward_zero = self.select(overshoot, self.v(arith.SubiOp(bits, self.scalar(1, i32))), bits)
        odd = self.v(arith.OrIOp(toward_zero, self.scalar(1, i32)))
        exact = self.cmpf(back, x, "oeq")
        rounded = self.select(exact, bits, odd)
        # Infinities (overflow) and NaN stay as the nearest rounding gives them.
        keep = self.v(arith.OrIOp(exact, self.cmpf(self.v(mathd.AbsFOp(back)), self.scalar(float("inf"), f64), "oeq")))
        return self.v(arith.BitcastOp(self.select(keep, bits, rounded), f32))

    def convert_logical(self, x: SSAValue, src: Attribute, to: Attribute) -> SSAValue:
        """
        `x`, a value of logical element type `src` held in `storage_type(src)`,
        converted to logical type `to` (held in `storage_type(to)`), with the
        reference's rules: `u8` reads as unsigned; float to `u8`/`i4`
        truncates toward zero and saturates (NaN to 0); integer to `i4`
        wraps modulo 16.
        """
        if not (is_held(src) or is_held(to)):
            return self.convert(x, to)
        if is_f8(src):
            return self.convert_logical(self.f8_to_f32(x, src), f32, to)
        if is_f8(to):
            return self.f32_to_f8(self.convert_logical(x, src, f32), to)
        out = storage_type(to)
        if is_unsigned(src) and not is_unsigned(to):
            if is_float(to):
                return self.convert(self.v(arith.UIToFPOp(x, f64 if isinstance(to, Float64Type) else f32)), to)
            if to.width.data > 8:
                return self.v(arith.ExtUIOp(x, out))
            # u8 -> i8 keeps the byte; u8 -> i4 wraps below.
        if is_float(src):
            lo, hi = (0, 255) if is_unsigned(to) else (-8, 7) if is_i4(to) else (lowest(to), highest(to))
            wide = self.convert(x, f64)
            big = self.cmpf(wide, self.scalar(float(hi) + 1.0, f64), "oge")
            small = self.cmpf(wide, self.scalar(float(lo), f64), "olt")
            nan = self.cmpf(wide, wide, "uno")
            bad = self.v(arith.OrIOp(self.v(arith.OrIOp(big, small)), nan))
            i32 = IntegerType(32)
            value = self.v(arith.FPToSIOp(self.select(bad, self.scalar(0.0, f64), wide), i32))
            value = self.select(big, self.scalar(hi, i32), value)
            value = self.select(small, self.scalar(lo, i32), value)
            return self.v(arith.TruncIOp(value, out))
        value = x
        if value.type != out:
            value = self.v(arith.ExtSIOp(value, out) if value.type.width.data < out.width.data
                           else arith.TruncIOp(value, out))
        return self.wrap_i4(value) if is_i4(to) and not is_i4(src) else value

    def f8_to_f32(self, bits: SSAValue, t: Attribute) -> SSAValue:
        """The f32 value of the f8 (type `t`) whose bits are the i8 `bits`: exact."""
        exp_bits, man_bits, _, infinities = F8_FORMATS[type(t)]
        bias = 2 ** (exp_bits - 1) - 1
        i32 = IntegerType(32)
        code = self.v(arith.ExtUIOp(bits, i32))
        c = lambda v: self.scalar(v, i32)  # noqa: E731
        exponent = self.v(arith.AndIOp(self.v(arith.ShRUIOp(code, c(man_bits))), c(2**exp_bits - 1)))
        mantissa = self.v(arith.AndIOp(code, c(2**man_bits - 1)))
        # Normal: the fields moved into f32's, the exponent rebiased.
        normal = self.v(arith.OrIOp(
            self.v(arith.ShLIOp(self.v(arith.AddiOp(exponent, c(127 - bias))), c(23))),
            self.v(arith.ShLIOp(mantissa, c(23 - man_bits)))))
        value = self.v(arith.BitcastOp(normal, f32))
        # Subnormal: mantissa x 2^(1 - bias - man_bits), exact in f32.
        tiny = self.mul(self.v(arith.SIToFPOp(mantissa, f32)), self.scalar(2.0 ** (1 - bias - man_bits), f32))
        value = self.select(self.cmpi(exponent, c(0), "eq"), tiny, value)
        top = self.cmpi(exponent, c(2**exp_bits - 1), "eq")
        if infinities:
            special = self.select(self.cmpi(mantissa, c(0), "eq"), self.scalar(float("inf"), f32),
                                  self.scalar(float("nan"), f32))
            value = self.select(top, special, value)
        else:
            value = self.select(self.and_(top, self.cmpi(mantissa, c(2**man_bits - 1), "eq")),
                                self.scalar(float("nan"), f32), value)
        negative = self.cmpi(self.v(arith.AndIOp(code, c(0x80))), c(0), "ne")
        return self.select(negative, self.neg(value), value)

    def f32_to_f8(self, x: SSAValue, t: Attribute) -> SSAValue:
        """
        The i8 bits of f32 `x` rounded to nearest even in f8 type `t`; a
        value past the largest finite one gives NaN (e4m3fn) or infinity
        (e5m2), as ml_dtypes' conversion does.
        """
        exp_bits, man_bits, top_code, infinities = F8_FORMATS[type(t)]
        bias = 2 ** (exp_bits - 1) - 1
        i32 = IntegerType(32)
        c = lambda v: self.scalar(v, i32)  # noqa: E731
        bits = self.v(arith.BitcastOp(x, i32))
        sign = self.v(arith.AndIOp(self.v(arith.ShRUIOp(bits, c(24))), c(0x80)))
        magnitude = self.v(arith.AndIOp(bits, c(0x7FFFFFFF)))
        # Normal: round f32's mantissa to `man_bits` half to even (the carry
        # may step the exponent, as it should), then rebias the exponent.
        drop = 23 - man_bits
        odd = self.v(arith.AndIOp(self.v(arith.ShRUIOp(magnitude, c(drop))), c(1)))
        rounded = self.v(arith.ShRUIOp(
            self.v(arith.AddiOp(self.v(arith.AddiOp(magnitude, c(2 ** (drop - 1) - 1))), odd)), c(drop)))
        normal = self.v(arith.SubiOp(rounded, c((127 - bias) << man_bits)))
        overflow_code = 0x7C if infinities else 0x7F
        normal = self.select(self.cmpi(normal, c(top_code), "sgt"), c(overflow_code), normal)
        # Below the smallest normal: multiples of 2^(1 - bias - man_bits), rounded half to even.
        scaled = self.mul(self.v(mathd.AbsFOp(x)), self.scalar(2.0 ** (bias - 1 + man_bits), f32))
        tiny = self.v(arith.FPToSIOp(self.v(mathd.RoundEvenOp(scaled)), i32))
        small = self.cmpi(magnitude, c((127 - bias + 1) << 23), "slt")
        code = self.select(small, tiny, normal)
        code = self.select(self.cmpi(magnitude, c(0x7F800000), "sgt"), c(0x7F), code)  # NaN
        return self.v(arith.TruncIOp(self.v(arith.OrIOp(code, sign)), IntegerType(8)))

    def wrap_i4(self, x: SSAValue) -> SSAValue:
        """An i8-held integer wrapped modulo 16 into -8..7 (the low nibble, sign-extended)."""
        four = self.scalar(4, x.type)
        return self.v(arith.ShRSIOp(self.v(arith.ShLIOp(x, four)), four))

    def to_compute(self, x: SSAValue) -> SSAValue:
        return self.convert(x, compute_type(x.type))

    # ------------------------------------------------------------------ index arithmetic

    def affine(self, expr: AffineExpr, dims: Sequence[SSAValue]) -> SSAValue:
        """An index value computing `expr` of `dims` (floordiv and mod round toward -inf)."""
        from xdsl.ir.affine import AffineBinaryOpExpr, AffineBinaryOpKind, AffineConstantExpr, AffineDimExpr

        if isinstance(expr, AffineConstantExpr):
            return self.index(expr.value)
        if isinstance(expr, AffineDimExpr):
            return dims[expr.position]
        if isinstance(expr, AffineBinaryOpExpr):
            a, b = self.affine(expr.lhs, dims), self.affine(expr.rhs, dims)
            kind = expr.kind
            if kind == AffineBinaryOpKind.Add:
                return self.v(arith.AddiOp(a, b))
            if kind == AffineBinaryOpKind.Mul:
                return self.v(arith.MuliOp(a, b))
            if kind == AffineBinaryOpKind.FloorDiv:
                return self.v(arith.FloorDivSIOp(a, b))
            if kind == AffineBinaryOpKind.CeilDiv:
                return self.v(arith.CeilDivSIOp(a, b))
            if kind == AffineBinaryOpKind.Mod:
                r = self.v(arith.RemSIOp(a, b))
                neg = self.cmpi(r, self.index(0), "slt")
                return self.select(neg, self.v(arith.AddiOp(r, b)), r)
        raise ExportError(f"unsupported affine expression {expr}")

    # ------------------------------------------------------------------ tensors

    def empty(self, shape_: Sequence[int], t: Attribute) -> SSAValue:
        return self.v(tensor.EmptyOp([], ttype(shape_, t)))

    def fill(self, value: float | int, shape_: Sequence[int], t: Attribute) -> SSAValue:
        out = self.empty(shape_, t)
        return self.v(FillOp([self.scalar(value, t)], [out], [out.type]))

    def generic(
        self,
        inputs: Sequence[SSAValue],
        maps: Sequence[AffineMap],
        out_shape: Sequence[int],
        out_elem: Attribute,
        body: Callable[..., Sequence[SSAValue] | SSAValue],
        *,
        rank: int | None = None,
        out_map: AffineMap | None = None,
        iterators: Sequence[IteratorTypeAttr] | None = None,
        init: SSAValue | None = None,
    ) -> SSAValue:
        """
        `linalg.generic` over a loop nest of `rank` dims (the output's by
        default); `body(emitter, *input_scalars, out_scalar)` returns the
        value to yield and may use `emitter.loop_index(d)`.
        """
        rank = len(out_shape) if rank is None else rank
        out_type = ttype(out_shape, out_elem)
        if init is None:
            init = self.empty(out_shape, out_elem)
        block = Block(arg_types=[elem(v) for v in inputs] + [out_elem])
        inner = self.at(block)
        result = body(inner, *block.args)
        values = [result] if isinstance(result, SSAValue) else list(result)
        inner.add(YieldOp(*values))
        op = GenericOp(
            list(inputs), [init], Region(block),
            [AffineMapAttr(m) for m in (*maps, out_map if out_map is not None else identity(rank))],
            list(iterators) if iterators is not None else [PARALLEL] * rank,
            [out_type],
        )
        return self.v(op)

    def loop_index(self, d: int) -> SSAValue:
        """Inside a `generic` body: the index of loop dim `d`."""
        return self.v(IndexOp(d))

    def elementwise(
        self, fn: Callable[..., SSAValue], out_shape: Sequence[int], out_elem: Attribute, *xs: SSAValue,
        raw: bool = False,
    ) -> SSAValue:
        """
        `out[i] = fn(x0[i], x1[i], ...)` with broadcasting; operands in their compute type unless `raw`.

        Operands of the output's shape, none a slice, are flattened to one loop: a nest whose inner
        loop is short (9 to 31 elements) LLVM unrolls whole and then vectorises across the outer
        loop with gathers and scatters, 5 to 10 times slower than one long contiguous loop (a
        64 x 16 `x * y + x` 2.4 us, 64 x 8 or 64 x 32 0.2 to 0.5 us, on AVX-512). A slice's
        tensor is strided in memory: flattening it would copy it. Otherwise the adjacent dims every
        operand reads alike are collapsed into one loop (`coalesce`). An op broadcasting one value
        per row over rows of `SHORT_ROWS` runs by rows (`row_elementwise`).
        """
        count = math.prod(out_shape)
        if len(out_shape) > 1 and count > 0 and all(
                list(shape(x)) == list(out_shape) and not isinstance(x.owner, tensor.ExtractSliceOp) for x in xs):
            flat = [self.reshape(x, [count]) for x in xs]
            return self.reshape(self.elementwise(fn, [count], out_elem, *flat, raw=raw), out_shape)
        coalesced = self.coalesce(xs, out_shape)
        if coalesced is not None:
            out, collapsed = coalesced
            return self.reshape(self.elementwise(fn, out, out_elem, *collapsed, raw=raw), out_shape)
        by_rows = self.row_elementwise(fn, out_shape, out_elem, xs)
        if by_rows is not None:
            return by_rows

        def body(em: Emitter, *args):
            values = list(args[: len(xs)]) if raw else [em.to_compute(a) for a in args[: len(xs)]]
            return em.convert(fn(em, *values), out_elem)

        return self.generic(xs, [broadcast_map(shape(x), out_shape) for x in xs], out_shape, out_elem, body)

    def coalesce(self, xs: Sequence[SSAValue], out_shape: Sequence[int]) -> tuple[list[int], list[SSAValue]] | None:
        """
        An elementwise op's operands with the adjacent dims they all read alike collapsed into one
        (`coalesced_dims`), and its collapsed output shape; None where no dims collapse (or an
        operand is a slice, which a reshape would copy). A per-channel scale over NCHW pixels is then
        a 16 x 256 loop nest, not 16 x 16 x 16, whose short inner loop LLVM vectorises with gathers
        (`elementwise`).
        """
        groups = coalesced_dims(out_shape, [shape(x) for x in xs])
        if math.prod(out_shape) == 0 or len(groups) == len(out_shape) or any(
                isinstance(x.owner, tensor.ExtractSliceOp) for x in xs):
            return None
        out = [math.prod(out_shape[d] for d in g) for g in groups]
        return out, [self.reshape(x, _collapse(shape(x), len(out_shape), groups)) if shape(x) else x for x in xs]

    def mapped(self, xs: Sequence[SSAValue], out_shape: Sequence[int], out_elem: Attribute,
               body: Callable[..., SSAValue]) -> SSAValue:
        """`generic` of an elementwise `body` over `xs` broadcast to `out_shape`, on coalesced dims (`coalesce`)."""
        coalesced = self.coalesce(xs, out_shape)
        if coalesced is not None:
            out, collapsed = coalesced
            return self.reshape(self.mapped(collapsed, out, out_elem, body), out_shape)
        return self.generic(xs, [broadcast_map(shape(x), out_shape) for x in xs], out_shape, out_elem, body)

    def cast(self, x: SSAValue, to: Attribute) -> SSAValue:
        if elem(x) == to:
            return x
        return self.elementwise(lambda em, a: em.convert(a, to), shape(x), to, x, raw=True)

    def widen(self, x: SSAValue) -> SSAValue:
        return self.cast(x, compute_type(elem(x)))

    def reduce(self, x: SSAValue, axes: Sequence[int], kind: str, keepdims: bool,
               acc: Attribute | None = None) -> SSAValue:
        """`sum`/`max`/`min` of `x` over `axes`, accumulated in the compute type (or `acc`)."""
        in_shape = shape(x)
        rank = len(in_shape)
        ct = acc or compute_type(elem(x))
        if list(axes) == [rank - 1] and elem(x) == ct == f32 and short_rows(x, in_shape):
            out_shape = [1 if i in axes else d for i, d in enumerate(in_shape) if keepdims or i not in axes]
            start = {"sum": 0, "max": lowest(ct), "min": highest(ct)}[kind]
            return self.row_reduce(x, kind, start, out_shape)
        return self.reduce_of(lambda em, a: em.convert(a, ct), [x], axes, kind, keepdims, ct)

    def reduce_of(self, fn: Callable[..., SSAValue], xs: Sequence[SSAValue], axes: Sequence[int], kind: str,
                  keepdims: bool = True, acc: Attribute | None = None) -> SSAValue:
        """
        `sum`/`max`/`min` over `axes` of `fn` of `xs` (broadcast to the first's shape, each read in
        its compute type unless `acc` is given, when `fn` converts), accumulated in `acc` or the
        first's compute type: the values reduced as they are made, no tile of them written (a
        norm's squares). A float sum's adds may reassociate (`REASSOC`), so LLVM vectorises it
        with several accumulators, as it does a max: in order, each add waits on the last (a 64 x
        1024 f32 row sum 51.8 us that way, 2.3 us reassociated; a layer norm 125.5 against 26.6
        us). The order is the reference's no more than a GEMM's is: within `Model.tolerance`.
        """
        in_shape = shape(xs[0])
        rank = len(in_shape)
        ct = acc or compute_type(elem(xs[0]))
        out_shape = [1 if i in axes else d for i, d in enumerate(in_shape) if keepdims or i not in axes]
        out_map = AffineMap(rank, 0, tuple(
            zero() if i in axes else dim(i) for i in range(rank) if keepdims or i not in axes
        ))
        start = {"sum": 0, "max": lowest(ct), "min": highest(ct)}[kind]
        combine = {"max": Emitter.max_, "min": Emitter.min_}.get(kind)

        def body(em: Emitter, *args):
            *values, total = args
            value = fn(em, *(values if acc is not None else [em.to_compute(v) for v in values]))
            if combine is not None:
                return combine(em, total, value)
            return em.v(arith.AddfOp(total, value, flags=REASSOC)) if is_float(ct) else em.add_(total, value)

        return self.generic(
            list(xs), [broadcast_map(shape(x), in_shape) for x in xs], out_shape, ct, body, rank=rank,
            out_map=out_map, iterators=[REDUCTION if i in axes else PARALLEL for i in range(rank)],
            init=self.fill(start, out_shape, ct),
        )

    def row_reduce(self, x: SSAValue, kind: str, start: float, out_shape: Sequence[int]) -> SSAValue:
        """
        `reduce` of f32 `x` over its last dim, of `SHORT_ROWS` elements: each row one masked vector
        (padded with the reduction's identity, `start`), summed by a `vector.reduction`; a max or
        min by halving the vector (`tree_reduce`): LLVM lowers a NaN-propagating
        `vector.reduction <maximumf>` on x86 to a scalar compare and blend per lane (a 64 x 10
        softmax 0.96 us that way, 0.86 us halving).
        """
        in_shape = shape(x)
        rows, r = math.prod(in_shape[:-1]), in_shape[-1]
        x2 = self.reshape(x, [rows, r])
        add = {"kind": vector.CombiningKindAttr("add"), "fastmath": REASSOC}

        def row(e: Emitter, i: SSAValue, acc: SSAValue) -> SSAValue:
            value = e.read_row(x2, i, r, start)
            if kind == "sum":
                # Built by `build`: xDSL 0.74's `ReductionOp.__init__` gives the result the vector's type.
                total = e.v(vector.ReductionOp.build(operands=[value, []], result_types=[f32], properties=add))
            else:
                total = e.tree_reduce(value, Emitter.max_ if kind == "max" else Emitter.min_)
            return e.v(tensor.InsertOp(total, acc, [i]))

        return self.reshape(self.for_(0, rows, 1, self.empty([rows], f32), row), out_shape)

    def row_elementwise(self, fn: Callable[..., SSAValue], out_shape: Sequence[int], out_elem: Attribute,
                        xs: Sequence[SSAValue]) -> SSAValue | None:
        """
        `elementwise` of f32 operands over `SHORT_ROWS` rows as one masked vector per row, or None
        where it does not apply: each operand is the output's shape (its row read), one value per
        row (`[..., 1]`, broadcast), one row for all (`[1, ..., r]`, read once) or one value, and
        `fn` builds only `arith` ops on vectors (no constants, no `math` calls, which the export's
        LLVM lowering scalarises on vectors).
        """
        if out_elem != f32 or any(elem(x) != f32 or not short_rows(x, out_shape) for x in xs):
            return None
        kinds = [_row_operand(x, out_shape) for x in xs]
        if None in kinds:
            return None
        r = out_shape[-1]
        width = row_lanes(r)
        if not _vector_body(fn, len(xs), VectorType(f32, [width])):
            return None
        rows = math.prod(out_shape[:-1])
        once = {j: self.read_row(self.reshape(x, [1, r]), self.index(0), r) for j, x in enumerate(xs)
                if kinds[j] == "column"}
        once |= {j: self.v(vector.BroadcastOp(self.first(x), VectorType(f32, [width])))
                 for j, x in enumerate(xs) if kinds[j] == "scalar"}
        per_row = {j: self.reshape(x, [rows, r] if kinds[j] == "row" else [rows])
                   for j, x in enumerate(xs) if kinds[j] in ("row", "value")}

        def row(e: Emitter, i: SSAValue, out: SSAValue) -> SSAValue:
            values = []
            for j, kind in enumerate(kinds):
                if kind == "row":
                    values.append(e.read_row(per_row[j], i, r))
                elif kind == "value":
                    scalar = e.v(tensor.ExtractOp(per_row[j], [i], f32))
                    values.append(e.v(vector.BroadcastOp(scalar, VectorType(f32, [width]))))
                else:
                    values.append(once[j])
            return e.write_vector(fn(e, *values), out, [i, e.index(0)], r == width)

        return self.reshape(self.for_(0, rows, 1, self.empty([rows, r], f32), row), out_shape)

    def tree_reduce(self, value: SSAValue, combine: Callable[..., SSAValue]) -> SSAValue:
        """`combine` over the lanes of a vector whose width is a power of two, halving it: its low
        half with its high half, and so on to one lane."""
        width = value.type.get_shape()[0]
        while width > 1:
            width //= 2
            halves = [self.v(vector.ShuffleOp(value, value, DenseArrayBase.from_list(i64, list(range(lo, lo + width))),
                                              result_type=VectorType(f32, [width])))
                      for lo in (0, width)]
            value = combine(self, *halves)
        return self.v(vector.ExtractOp(value, [0], f32))

    def all_finite(self, x: SSAValue) -> SSAValue:
        """Whether every element of f32 tensor `x` is finite (an `i1`): its largest magnitude under infinity."""
        i32 = IntegerType(32)
        if not shape(x):
            x = self.reshape(x, [1])
        rank = len(shape(x))

        def body(em: Emitter, a, acc):
            return em.max_(acc, em.and_(em.v(arith.BitcastOp(a, i32)), em.scalar(0x7FFFFFFF, i32)))

        largest = self.generic([x], [identity(rank)], [1], i32, body, rank=rank, out_map=AffineMap(rank, 0, (zero(),)),
                               iterators=[REDUCTION] * rank, init=self.fill(0, [1], i32))
        return self.cmpi(self.first(largest), self.scalar(0x7F800000, i32), "slt")

    def if_(self, cond: SSAValue, then: Callable[[Emitter], SSAValue],
            otherwise: Callable[[Emitter], SSAValue]) -> SSAValue:
        """`scf.if` on `cond` yielding the value `then` or `otherwise` emits in its branch."""
        regions, result_type = [], None
        for branch in (then, otherwise):
            block = Block()
            inner = self.at(block)
            value = branch(inner)
            inner.add(scf.YieldOp(value))
            regions.append(Region(block))
            result_type = value.type
        return self.v(scf.IfOp(cond, [result_type], *regions))

    def first(self, x: SSAValue) -> SSAValue:
        """The first element of tensor `x` (its only one, for a broadcast scalar)."""
        return self.v(tensor.ExtractOp(x, [self.index(0)] * len(shape(x)), elem(x)))

    def read_row(self, x: SSAValue, i: SSAValue, r: int, padding: float = 0.0) -> SSAValue:
        """Row `i` of the 2-D f32 tensor `x` (rows of `r`) as one vector of `row_lanes(r)`, padded with `padding`."""
        width = row_lanes(r)
        return self.read_vector(x, [i, self.index(0)], r == width, width, padding)

    def matmul(self, a: SSAValue, b: SSAValue, out_elem: Attribute, acc: SSAValue | None = None,
               widen: Widen | None = None) -> SSAValue:
        """
        NumPy `a @ b` (rank >= 2, batch dims broadcast), accumulated in the
        compute type; with `acc`, `acc + a @ b` accumulated into `acc`. With
        `widen`, `b` is a 2-D tile the micro-kernel converts to f32 row
        vector by row vector as it reads it (`vector_matmul`).

        The loops nest as batch, m, k, n: the innermost loop walks a row of
        `b` and of the result, so it vectorises without reassociating sums.
        """
        sa, sb = shape(a), shape(b)
        if len(sa) > 2 and len(sb) == 2 and all(d == 1 for d in sa[:-2]) \
                and (acc is None or list(shape(acc)) == [*sa[:-1], sb[-1]]):
            # Leading unit dims (a [1, S, D] activation): the 2-D GEMM, reshaped back.
            flat = self.matmul(self.reshape(a, list(sa[-2:])), b, out_elem,
                               None if acc is None else self.reshape(acc, [sa[-2], sb[-1]]), widen)
            return self.reshape(flat, [*sa[:-1], sb[-1]])
        nb = max(len(sa), len(sb)) - 2
        batch = [max(x, y) for x, y in zip(
            (1,) * (nb - len(sa) + 2) + sa[:-2], (1,) * (nb - len(sb) + 2) + sb[:-2], strict=True)]
        m, k, n = nb, nb + 1, nb + 2
        rank = nb + 3

        def operand_map(s, rows, cols):
            lead = nb - (len(s) - 2)
            batch_dims = [zero() if s[j] == 1 and batch[lead + j] != 1 else dim(lead + j) for j in range(len(s) - 2)]
            return AffineMap(rank, 0, tuple(batch_dims + [dim(rows), dim(cols)]))

        out_shape = [*batch, sa[-2], sb[-1]]
        ct = compute_type(out_elem)

        def body(em: Emitter, x, y, total):
            return em.add_(total, em.mul(em.convert(x, ct), em.convert(y, ct)))

        if acc is None or elem(acc) != ct or list(shape(acc)) != out_shape:
            init = self.fill(0, out_shape, ct)
        else:
            init = acc
        block = micro_kernel(sa, sb, elem(a), f32 if widen else elem(b), ct)
        if widen is not None and block is None:
            raise ExportError(f"no micro-kernel widens b for a {list(sa)} @ {list(sb)} product")
        if block is not None:
            total = self.vector_matmul(a, b, init, block, widen=widen)
            if acc is not None and init is not acc:
                total = self.elementwise(lambda e, x, y: e.add_(x, y), out_shape, ct, acc, total)
            return self.cast(total, out_elem)
        total = self.generic(
            [a, b], [operand_map(sa, m, k), operand_map(sb, k, n)], out_shape, ct, body, rank=rank,
            out_map=AffineMap(rank, 0, tuple([dim(i) for i in range(nb)] + [dim(m), dim(n)])),
            iterators=[PARALLEL] * (nb + 1) + [REDUCTION, PARALLEL], init=init,
        )
        if acc is not None and init is not acc:
            total = self.elementwise(lambda e, x, y: e.add_(x, y), out_shape, ct, acc, total)
        return self.cast(total, out_elem)

    # ------------------------------------------------------------------ the GEMM micro-kernel

    def packed_matmul(self, a: SSAValue, b: SSAValue, out_shape: Sequence[int], block: tuple[int, int],
                      acc: SSAValue | None = None, prefetch: Prefetch | None = None) -> SSAValue:
        """`[acc +] a @ b` in f32, `b` packed by column strips of `block` (`vector_matmul`)."""
        if acc is not None and elem(acc) == f32 and list(shape(acc)) == list(out_shape):
            return self.vector_matmul(a, b, acc, block, packed=True, prefetch=prefetch)
        total = self.vector_matmul(a, b, self.fill(0, out_shape, f32), block, packed=True, prefetch=prefetch)
        if acc is not None:
            total = self.elementwise(lambda e, x, y: e.add_(x, y), out_shape, f32, acc, total)
        return total

    def vector_matmul(self, a: SSAValue, b: SSAValue, c: SSAValue, block: tuple[int, int],
                      packed: bool = False, prefetch: Prefetch | None = None,
                      widen: Widen | None = None) -> SSAValue:
        """
        `c + a @ b` for f32 tiles, `c` [M, N], register-blocked by
        `block = (mr, nq)` (see `micro_kernel`): for each strip of `nr = nq *
        VL` columns of `b` (it stays in L1) and each `mr`-row block of `a`,
        `mr x nq` accumulator vectors are read from `c`, updated by one
        `vector.fma` per row and vector at every k (a broadcast element of
        `a` times a row vector of `b`) and written back. `a` is [M, K]; `b`
        is [K, N], or packed by column strips, [N / nr, K, nr], so that the
        kernel reads the strip as one sequential stream (a strided strip
        maps onto few L1 sets). Each output element is summed over
        k in order, as the scalar loop sums it, with fused multiply-adds.
        When `nr` does not divide N, the last strip's vectors of `c` (and of
        an unpacked `b`) are masked at its edge; a packed `b` is zero there.
        `prefetch(emitter, s, p, blocks, strips)`, where given, is emitted
        before row block `p` (of `blocks`) of strip `s` (of `strips`): the
        exporter prefetches a share of the next tiles there, so that their
        memory traffic overlaps this tile's arithmetic. `widen(emitter,
        vector, column)`, where given, converts each row vector read from an
        unpacked `b` of another element type (bf16, a quantized weight) to
        f32 in the registers: no f32 copy of `b` is written and read back.
        """
        m, n = shape(c)
        k = shape(b)[-2]
        mr, nq = block
        nr = nq * VL
        main = m - m % mr
        edge = n % nr != 0
        blocks = -(-m // mr)
        strips = -(-n // nr)

        def strip(e: Emitter, s: SSAValue, c_in: SSAValue) -> SSAValue:
            j = e.v(arith.MuliOp(s, e.index(nr)))
            c_out = c_in
            if main:
                def rows(e2: Emitter, p: SSAValue, c_rows: SSAValue) -> SSAValue:
                    if prefetch is not None:
                        prefetch(e2, s, p, blocks, strips)
                    return e2._micro_tile(a, b, c_rows, p, s, j, mr, nq, k, packed, edge, widen=widen)
                c_out = e.for_(0, main // mr, 1, c_out, rows)
            if m % mr:
                if prefetch is not None:
                    prefetch(e, s, e.index(main // mr), blocks, strips)
                c_out = e._micro_tile(a, b, c_out, e.index(main // mr), s, j, m % mr, nq, k, packed, edge, mr,
                                      widen)
            return c_out

        return self.for_(0, -(-n // nr), 1, c, strip)

    def for_(self, lb: int, ub: int, step: int, init: SSAValue, body) -> SSAValue:
        """`scf.for` over `[lb, ub)` carrying one value; `body(emitter, iv, carried)` returns the next."""
        block = Block(arg_types=[IndexType(), init.type])
        inner = self.at(block)
        inner.add(scf.YieldOp(body(inner, block.args[0], block.args[1])))
        return self.v(scf.ForOp(self.index(lb), self.index(ub), self.index(step), [init], Region(block)))

    def _micro_tile(self, a, b, c, p: SSAValue, s: SSAValue, j: SSAValue, rows_: int, nq: int, k: int,
                    packed: bool, edge: bool, mr: int | None = None, widen: Widen | None = None) -> SSAValue:
        """`c[i:i+rows_, j:j+nq*VL] += a[i:i+rows_, :] @ b[:, j:j+nq*VL]` (i = p * mr) in vector registers."""
        vt = VectorType(f32, [VL])
        mr = mr or rows_
        i = self.v(arith.MuliOp(p, self.index(mr)))
        rows = [i if r == 0 else self.v(arith.AddiOp(i, self.index(r))) for r in range(rows_)]
        cols = [j if q == 0 else self.v(arith.AddiOp(j, self.index(q * VL))) for q in range(nq)]
        accs = [self.read_vector(c, [rows[r], cols[q]], not edge) for r in range(rows_) for q in range(nq)]
        block = Block(arg_types=[IndexType(), *([vt] * len(accs))])
        e = self.at(block)
        kk, carried = block.args[0], list(block.args[1:])
        if packed:
            b_rows = [e.read_vector(b, [s, kk, e.index(q * VL)]) for q in range(nq)]
        elif widen is not None:
            b_rows = [widen(e, e.read_vector(b, [kk, cols[q]], not edge), cols[q]) for q in range(nq)]
        else:
            b_rows = [e.read_vector(b, [kk, cols[q]], not edge) for q in range(nq)]
        out = []
        for r in range(rows_):
            index = [rows[r], kk]
            scalar = e.v(tensor.ExtractOp(a, index, f32))
            splat = e.v(vector.BroadcastOp(scalar, vt))
            for q in range(nq):
                out.append(e.v(vector.FMAOp(splat, b_rows[q], carried[r * nq + q])))
        e.add(scf.YieldOp(*out))
        loop = self.add(scf.ForOp(self.index(0), self.index(k), self.index(1), accs, Region(block)))
        for r in range(rows_):
            for q in range(nq):
                c = self.write_vector(loop.results[r * nq + q], c, [rows[r], cols[q]], not edge)
        return c

    def along_vectors(self, width: int, dest: SSAValue, one) -> SSAValue:
        """
        `dest` threaded through `one(emitter, column, dest)` at each `VL`-wide vector's column of a
        row of `width` (a multiple of `VL`): unrolled up to `CONCAT_UNROLLED_VECTORS` vectors, else
        an `scf.for`.
        """
        if width // VL > CONCAT_UNROLLED_VECTORS:
            return self.for_(0, width, VL, dest, one)
        for q in range(width // VL):
            dest = one(self, self.index(q * VL), dest)
        return dest

    def read_vector(self, source: SSAValue, index: Sequence[SSAValue], in_bounds: bool = True,
                    width: int | None = None, padding: float | int = 0) -> SSAValue:
        """`width` (default `VL`) consecutive elements of a tensor or memref along its last dim (past its
        end: `padding`, unless `in_bounds`)."""
        rank = len(shape(source))
        t = elem(source)
        return self.v(vector.TransferReadOp(
            source, index, self.scalar(padding, t), VectorType(t, [width or VL]), ArrayAttr([BoolAttr.from_bool(in_bounds)]),
            AffineMapAttr(AffineMap(rank, 0, (dim(rank - 1),))),
        ))

    def write_vector(self, value: SSAValue, dest: SSAValue, index: Sequence[SSAValue],
                     in_bounds: bool = True) -> SSAValue:
        """`dest` with `value` written along its last dim from `index` (masked at its end unless `in_bounds`)."""
        rank = len(shape(dest))
        return self.v(vector.TransferWriteOp(
            value, dest, index, ArrayAttr([BoolAttr.from_bool(in_bounds)]),
            permutation_map=AffineMapAttr(AffineMap(rank, 0, (dim(rank - 1),))), result_type=dest.type,
        ))

    def pad(self, x: SSAValue, low: Sequence[int], high: Sequence[int], value: float | int) -> SSAValue:
        """
        `x` padded with a constant: a tile filled with it, `x` copied into its interior by a
        generic (a loop LLVM vectorises). A `tensor.pad` of zeros bufferizes to a `memref.copy`
        into a strided view, which the runtime's `memrefCopy` walks element by element: a 3 x 3
        average pool of 16 x 32 x 32 took 84 us so, against 16.7 for the max pool.
        """
        if not any(low) and not any(high):
            return x
        in_shape = shape(x)
        out_shape = [d + lo + hi for d, lo, hi in zip(in_shape, low, high)]
        filled = self.fill(value, out_shape, elem(x))
        interior = self.generic([x], [identity(len(in_shape))], in_shape, elem(x), lambda e, a, _out: a,
                                init=self.extract_slice(filled, low, in_shape))
        return self.insert_slice(interior, filled, low)

    def reshape(self, x: SSAValue, out_shape: Sequence[int]) -> SSAValue:
        """Row-major reshape: collapse to 1-D, then expand."""
        in_shape = shape(x)
        if tuple(in_shape) == tuple(out_shape):
            return x
        flat = x
        if len(in_shape) != 1:
            flat = self.v(tensor.CollapseShapeOp(
                operands=[x], result_types=[ttype([math.prod(in_shape)], elem(x))],
                properties={"reassociation": _reassociation([list(range(len(in_shape)))] if in_shape else [])},
            ))
        if len(out_shape) == 1:
            return flat
        return self.v(tensor.ExpandShapeOp(
            flat, [], _reassociation([list(range(len(out_shape)))] if out_shape else []), list(out_shape),
            ttype(out_shape, elem(x)),
        ))

    def extract_slice(self, x: SSAValue, offsets: Sequence[int], sizes: Sequence[int]) -> SSAValue:
        return self.v(tensor.ExtractSliceOp.from_static_parameters(x, list(offsets), list(sizes), [1] * len(sizes)))

    def insert_slice(self, x: SSAValue, into: SSAValue, offsets: Sequence[int]) -> SSAValue:
        return self.v(tensor.InsertSliceOp.from_static_parameters(x, into, list(offsets), list(shape(x)), [1] * len(offsets)))


REASSOC = arith.FastMathFlagsAttr([arith.FastMathFlag.REASSOC])
"""Fast-math flags of a sum's adds: they may reassociate (`Emitter.reduce_of`, `row_reduce`)."""

VL = VECTOR_LANES
"""f32 lanes of a vector register (AVX-512: 16; on narrower machines LLVM splits the vectors)."""


def short_rows(x: SSAValue, shape_: Sequence[int]) -> bool:
    """Whether an op over `shape_` reading `x` goes by rows (`Emitter.row_reduce`, `row_elementwise`):
    `SHORT_ROWS` rows, rank 2, or more when `x` is no slice (collapsing a slice's leading dims would
    copy it)."""
    if not by_rows(shape_):
        return False
    return len(shape_) == 2 or not isinstance(x.owner, tensor.ExtractSliceOp)


def _row_operand(x: SSAValue, out_shape: Sequence[int]) -> str | None:
    """How `Emitter.row_elementwise` reads operand `x` of an op of `out_shape`: `row`, `value`, `column`,
    `scalar`, or None (another broadcast)."""
    s = [1] * (len(out_shape) - len(shape(x))) + list(shape(x))
    if s == list(out_shape):
        return "row"
    if s == [*out_shape[:-1], 1]:
        return "value"
    if all(d == 1 for d in s[:-1]):
        return "column" if s[-1] == out_shape[-1] else "scalar" if s[-1] == 1 else None
    return None


def _vector_body(fn: Callable[..., SSAValue], arity: int, type_: VectorType) -> bool:
    """Whether `fn` on `arity` values of `type_` builds only `arith` ops on vectors (tried on a scratch
    block, then erased)."""
    block = Block(arg_types=[type_] * arity)
    result = fn(Emitter(block), *block.args)
    ok = isinstance(result, SSAValue) and result.type == type_ and all(
        op.name.startswith("arith.") and all(isinstance(v.type, VectorType) for v in (*op.operands, *op.results))
        for op in block.ops)
    for op in reversed(list(block.ops)):
        block.erase_op(op, safe_erase=False)
    return ok


MICRO_KERNELS = ((12, 2), (6, 4), (8, 2), (8, 1), (4, 1))
"""Register blocks `(mr, nq)`, best first: `mr` rows by `nq` vectors of `VL` columns."""


FEW_ROWS_ACCUMULATORS = 12
"""Accumulator vectors of a block of fewer rows than `MICRO_KERNELS`' smallest: at least the 8 that two FMA
pipes of 4-cycle latency keep busy (1 row x 8 vectors, 2 x 4, 3 x 4)."""


def micro_kernel(sa, sb, ta, tb, tc) -> tuple[int, int] | None:
    """
    The register block `(mr, nq)` of the vectorised GEMM micro-kernel for
    tiles `sa @ sb` in `tc`, or None: it takes 2-D f32 tiles. 12 x 2
    vectors is 24 accumulators, 2 row vectors of `b` and a broadcast: 27 of
    AVX-512's 32 registers, enough independent FMAs (24) to cover two FMA
    pipes of 4-cycle latency, and 14 loads per 24 FMAs, under the two load
    ports; 6 x 4 is as many accumulators with 10 loads, for 64-row tiles
    that 12 does not divide. A block is taken when its rows divide the
    tile's or they are many (the remainder block is small beside them).
    Columns that no strip width divides take the widest strip not over them
    (the last strip is masked). Fewer rows than the smallest block (a decode
    step's GEMV) take as many vectors across as make `FEW_ROWS_ACCUMULATORS`.
    """
    if len(sa) != 2 or len(sb) != 2 or not (ta == tb == tc == f32):
        return None
    m, n = sa[0], sb[1]
    if m < MICRO_KERNELS[-1][0]:
        # Few rows (a decode step's GEMV): as many vectors across as give the FMAs
        # `FEW_ROWS_ACCUMULATORS` independent chains, so they do not wait on each other's latency.
        nq = next(q for q in (8, 4, 2, 1) if n % (VL * q) == 0 and m * q <= FEW_ROWS_ACCUMULATORS or q == 1)
        return m, nq
    for mr, nq in MICRO_KERNELS:
        if n % (VL * nq) == 0 and (m % mr == 0 or m >= 8 * mr or mr == MICRO_KERNELS[-1][0]):
            return min(mr, m), nq
    mr = next(r for r, _ in MICRO_KERNELS if m % r == 0 or m >= 8 * r or r == MICRO_KERNELS[-1][0])
    return min(mr, m), (2 if n > VL else 1)


def _reassociation(groups: Sequence[Sequence[int]]) -> ArrayAttr:
    return ArrayAttr([ArrayAttr([IntegerAttr(i, i64) for i in group]) for group in groups])


# --------------------------------------------------------------------------- graph ops


INTEGER_BIAS = 12582912.0
"""1.5 * 2^23: an f32 in [2^23, 2^24) has an ulp of 1, so adding it to a float under 2^22 in size rounds
that to an integer held in the low mantissa bits (`Emitter.exp`), and an integer under 2^22 added to
its bits (`INTEGER_BIAS_BITS`) is that f32 plus the integer (`dequantized_rows`)."""

EXP_FLUSH_BELOW = -87.33
"""e^-87.33 is 1.0065 times the smallest normal f32 (e^-87.3365): the polynomial's result, within 2 ulp,
stays normal (`Emitter.exp` with a floor)."""

INTEGER_BIAS_BITS = 0x4B400000
"""The bits of `INTEGER_BIAS` as an f32."""

EXP_COEFFICIENTS = (1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664, 0.008333333333333333,
                    0.001388888888888889, 0.0001984126984126984)
"""e^r = sum of r^i / i! to i = 7 for |r| <= ln 2 / 2 (`Emitter.exp`): truncation error under 3e-9,
far below f32's ulp."""

ERFC_COEFFICIENTS = (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
    0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
)
"""Numerical Recipes' Chebyshev fit: erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z >= 0,
relative error under 1.2e-7 for every z."""


def erf(em: Emitter, x: SSAValue) -> SSAValue:
    """
    erf in `x`'s float type without libm: one division, one exponential
    (`Emitter.exp`) and a degree-9 polynomial, so the elementwise loop
    vectorises; absolute error under 1.2e-7.
    """
    t_ = x.type
    z = em.v(mathd.AbsFOp(x))
    one = em.scalar(1.0, t_)
    t = em.div(one, em.add_(one, em.mul(em.scalar(0.5, t_), z)))
    poly = em.scalar(ERFC_COEFFICIENTS[-1], t_)
    for c in reversed(ERFC_COEFFICIENTS[:-1]):
        poly = em.add_(em.scalar(c, t_), em.mul(t, poly))
    erfc = em.mul(t, em.exp(em.add_(em.neg(em.mul(z, z)), poly)))
    positive = em.sub(one, erfc)
    return em.select(em.cmpf(x, em.scalar(0.0, t_), "olt"), em.neg(positive), positive)


def _gelu(em: Emitter, x: SSAValue) -> SSAValue:
    # 0.5 * x * (1 + erf(x / sqrt(2))), the exact form, in the compute type.
    return em.mul(em.mul(em.scalar(0.5, x.type), x),
                  em.add_(em.scalar(1.0, x.type), erf(em, em.mul(x, em.scalar(1 / math.sqrt(2.0), x.type)))))


def _sigmoid(em: Emitter, x: SSAValue) -> SSAValue:
    one = em.scalar(1.0, x.type)
    return em.div(one, em.add_(one, em.exp(em.neg(x))))


UNARY: dict[type[Operation], Callable[[Emitter, SSAValue], SSAValue]] = {
    g.ReluOp: lambda em, x: em.max_(x, em.scalar(0, x.type)),
    g.GeluOp: _gelu,
    g.SiluOp: lambda em, x: em.mul(x, _sigmoid(em, x)),
    g.SigmoidOp: _sigmoid,
    g.TanhOp: lambda em, x: em.v(mathd.TanhOp(x)),
    g.ExpOp: lambda em, x: em.exp(x),
    g.LogOp: lambda em, x: em.v(mathd.LogOp(x)),
    g.SqrtOp: lambda em, x: em.sqrt(x),
    g.RsqrtOp: lambda em, x: em.div(em.scalar(1.0, x.type), em.sqrt(x)),
    # Integer abs as a select: the LLVM lowering has no pattern for `math.absi`; abs(min) wraps to min.
    g.AbsOp: lambda em, x: em.v(mathd.AbsFOp(x)) if is_float(x.type) else em.select(
        em.cmpi(x, em.scalar(0, x.type), "slt"), em.neg(x), x),
    g.ErfOp: erf,
    g.NegOp: lambda em, x: em.neg(x),
}

BINARY: dict[type[Operation], Callable[[Emitter, SSAValue, SSAValue], SSAValue]] = {
    g.AddOp: Emitter.add_,
    g.SubOp: Emitter.sub,
    g.MulOp: Emitter.mul,
    g.DivOp: Emitter.div,
    g.MaximumOp: Emitter.max_,
    g.MinimumOp: Emitter.min_,
    g.PowOp: Emitter.pow_,
}

REDUCE_KIND = {g.SumOp: "sum", g.MeanOp: "sum", g.ReduceMaxOp: "max", g.ReduceMinOp: "min"}


def mean(em: Emitter, x: SSAValue, axes: Sequence[int], keepdims: bool, out_elem: Attribute) -> SSAValue:
    """The mean over `axes`; of integers, the f64 mean (NumPy's) truncated toward zero."""
    acc = None if is_float(elem(x)) else f64
    total = em.reduce(x, axes, "sum", keepdims, acc)
    count = float(math.prod(shape(x)[a] for a in axes))
    return em.elementwise(lambda e, s: e.div(s, e.scalar(count, s.type)), shape(total), out_elem, total, raw=True)


def lower_reduction(em: Emitter, op: g.ReductionOp, x: SSAValue) -> SSAValue:
    axes = list(op.axes.get_values())
    if isinstance(op, g.MeanOp):
        return mean(em, x, axes, op.keepdims is not None, elem(op.result))
    total = em.reduce(x, axes, REDUCE_KIND[type(op)], op.keepdims is not None)
    return em.cast(total, elem(op.result))


def by_row_vectors(x: SSAValue, axes: Sequence[int]) -> bool:
    """Whether a row-wise function of `x` over `axes`, computed on `x` in f32, runs as one masked
    vector per row (`Emitter.row_reduce`, `row_elementwise`): the last dim only, its rows
    `SHORT_ROWS` (`short_rows`; `x` widened is no slice)."""
    if list(axes) != [len(shape(x)) - 1]:
        return False
    return short_rows(x, shape(x)) if elem(x) == f32 else by_rows(shape(x))


def softmax(em: Emitter, x: SSAValue, axis: int, out_elem: Attribute, log: bool = False) -> SSAValue:
    """
    Softmax (or log-softmax) along `axis`, computed in f32, the result in `out_elem`. Long rows in
    four passes, `x` read in its own type: its max; the exponentials of the shifted values (a
    tile); their sum; the division, rounded to `out_elem` (log-softmax: the max, the sum of the
    exponentials as they are made, the shift and the log: no tile). Short rows
    (`by_row_vectors`) go by masked vectors, over `x` in f32.
    """
    axis = axis % len(shape(x))
    s, t = shape(x), f32
    # An exponential whose quotient by the row's sum (1 to the row's length) could be subnormal is 0:
    # a divide that makes or reads a subnormal takes a microcode assist on Intel cores (`Emitter.exp`).
    floor = EXP_FLUSH_BELOW + math.log(s[axis])

    if by_row_vectors(x, [axis]):
        x = em.widen(x)
        peak = em.reduce(x, [axis], "max", True)
        shifted = em.elementwise(lambda e, a, m: e.sub(a, m), s, t, x, peak)
        exps = em.elementwise(lambda e, a: e.exp(a, floor), s, t, shifted)
        total = em.reduce(exps, [axis], "sum", True)
        if log:
            return em.cast(em.elementwise(lambda e, a, z: e.sub(a, e.v(mathd.LogOp(z))), s, t, shifted, total), out_elem)
        return em.cast(em.elementwise(lambda e, a, z: e.div(a, z), s, t, exps, total), out_elem)
    peak = em.reduce(x, [axis], "max", True)
    if log:
        total = em.reduce_of(lambda e, a, m: e.exp(e.sub(a, m), floor), [x, peak], [axis], "sum")
        return em.elementwise(lambda e, a, m, z: e.sub(e.sub(a, m), e.v(mathd.LogOp(z))), s, out_elem, x, peak, total)
    exps = em.elementwise(lambda e, a, m: e.exp(e.sub(a, m), floor), s, t, x, peak)
    total = em.reduce(exps, [axis], "sum", True)
    return em.elementwise(lambda e, a, z: e.div(a, z), s, out_elem, exps, total)


def layernorm(em: Emitter, op: g.LayerNormOp | g.RmsNormOp, x: SSAValue, scale, bias, out_elem: Attribute) -> SSAValue:
    """
    Layer or RMS norm of `x` over the dims from `op.axis` on, computed in f32, the result in
    `out_elem`. Long rows in passes over `x` (read in its own type): its sum (a layer norm), the
    sum of the squared (centred) values, then the normalised, scaled and shifted values rounded to
    `out_elem`: no tile but the result. Short rows (`by_row_vectors`) go by masked vectors.
    """
    s, t = shape(x), f32
    axes = list(range(op.axis.value.data, len(s)))
    count = float(math.prod(s[a] for a in axes))
    eps = op.epsilon.value.data
    row_shape = [1 if i in axes else d for i, d in enumerate(s)]
    params = [p for p in (scale, bias) if p is not None]

    def normalised(e: Emitter, a, m, d, *ps):
        y = e.div(e.sub(a, m) if m is not None else a, d)
        rest = list(ps)
        if scale is not None:
            y = e.mul(y, rest.pop(0))
        if bias is not None:
            y = e.add_(y, rest.pop(0))
        return y

    def uncentred(e: Emitter, a, d, *ps):
        return normalised(e, a, None, d, *ps)

    def row_mean(v: SSAValue) -> SSAValue:
        return em.elementwise(lambda e, z: e.div(z, e.scalar(count, t)), row_shape, t, em.reduce(v, axes, "sum", True))

    def root_mean(z: SSAValue) -> SSAValue:
        return em.elementwise(lambda e, q: e.sqrt(e.add_(e.div(q, e.scalar(count, t)), e.scalar(eps, t))), row_shape, t, z)

    if by_row_vectors(x, axes):
        x = em.widen(x)
        params = [em.widen(p) for p in params]  # f32, as `x`: the rows run as f32 vectors
        if isinstance(op, g.LayerNormOp):
            centered = em.elementwise(lambda e, a, m: e.sub(a, m), s, t, x, row_mean(x))
        else:
            centered = x
        denom = root_mean(em.reduce(em.elementwise(lambda e, a: e.mul(a, a), s, t, centered), axes, "sum", True))
        return em.cast(em.elementwise(uncentred, s, t, centered, denom, *params), out_elem)
    if isinstance(op, g.LayerNormOp):
        mu = row_mean(x)
        denom = root_mean(em.reduce_of(lambda e, a, m: e.mul(e.sub(a, m), e.sub(a, m)), [x, mu], axes, "sum"))
        return em.elementwise(normalised, s, out_elem, x, mu, denom, *params)
    denom = root_mean(em.reduce_of(lambda e, a: e.mul(a, a), [x], axes, "sum"))
    return em.elementwise(uncentred, s, out_elem, x, denom, *params)


def causal_mask(em: Emitter, x: SSAValue, row: SSAValue, col: SSAValue) -> SSAValue:
    """`-inf` where `col + j > row + i` (i, j the tile's last two indices)."""
    s = shape(x)
    rank = len(s)

    def body(e: Emitter, a, _out):
        i = e.v(arith.AddiOp(e.loop_index(rank - 2), row))
        j = e.v(arith.AddiOp(e.loop_index(rank - 1), col))
        masked = e.cmpi(j, i, "sgt")
        return e.select(masked, e.scalar(_masked_value(a.type), a.type), a)

    return em.generic([x], [identity(rank)], s, elem(x), body)


def _masked_value(t: Attribute) -> float:
    if isinstance(t, Float8E4M3FNType):
        return -448.0
    return float("-inf")


def conv2d(em: Emitter, op: g.Conv2DOp, x: SSAValue, w: SSAValue, bias: SSAValue | None,
           weight_rows: tuple[SSAValue, Sequence[int]] | None = None) -> SSAValue:
    """
    `graph.conv2d` on tiles: an f32 image as an implicit GEMM through the
    micro-kernel (`_implicit_gemm`), another ungrouped one as a product over
    its patches (`_im2col_product`), both with `weight_rows` (the weight as
    [O, K] rows and K's order) where the exporter loaded it so; a grouped
    one as one `linalg.generic` over the window.
    """
    sh, sw = op.strides.get_values()
    pt, pl, pb, pr = op.pads.get_values()
    dh, dw = op.dilations.get_values()
    groups = op.groups.value.data
    x = em.pad(x, [0, 0, pt, pl], [0, 0, pb, pr], 0)
    out_shape, out_elem = shape(op.result), elem(op.result)
    vectorised = _implicit_gemm(em, op, x, w, out_shape, *(weight_rows or ()))
    if vectorised is not None:
        if bias is not None:
            return em.elementwise(lambda e, a, b: e.add_(a, b), out_shape, out_elem, vectorised,
                                  em.reshape(bias, [out_shape[1], 1, 1]))
        return vectorised
    ct = compute_type(out_elem)
    if groups == 1:
        total = _im2col_product(em, op, x, w, out_shape, ct, *(weight_rows or ()))
        if bias is not None:
            return em.elementwise(lambda e, a, b: e.add_(a, b), out_shape, out_elem, total,
                                  em.reshape(bias, [out_shape[1], 1, 1]))
        return em.cast(total, out_elem)
    # Grouped. Loops: n, o (parallel), c, i, j (reduction), y, x (parallel):
    # the innermost loops walk output rows, which vectorise.
    o_count, cg = shape(w)[0], shape(w)[1]
    n_, o_, c_, i_, j_, y_, x_ = (dim(k) for k in range(7))
    channel = (o_ // (o_count // groups)) * cg + c_
    x_map = AffineMap(7, 0, (n_, channel, y_ * sh + i_ * dh, x_ * sw + j_ * dw))
    w_map = AffineMap(7, 0, (o_, c_, i_, j_))

    def body(e: Emitter, a, b, acc):
        return e.add_(acc, e.mul(e.convert(a, ct), e.convert(b, ct)))

    total = em.generic(
        [x, w], [x_map, w_map], out_shape, ct, body, rank=7,
        out_map=AffineMap(7, 0, (n_, o_, y_, x_)), iterators=[PARALLEL] * 2 + [REDUCTION] * 3 + [PARALLEL] * 2,
        init=em.fill(0, out_shape, ct),
    )
    if bias is not None:
        return em.elementwise(lambda e, a, b: e.add_(a, b), out_shape, out_elem, total, em.reshape(bias, [out_shape[1], 1, 1]))
    return em.cast(total, out_elem)


def _im2col_product(em: Emitter, op: g.Conv2DOp, xp: SSAValue, w: SSAValue | None, out_shape: Sequence[int],
                    ct: Attribute, weight_rows: SSAValue | None = None,
                    k_order: Sequence[int] = (1, 2, 3)) -> SSAValue:
    """
    An ungrouped convolution that the micro-kernel does not take (integer,
    low-precision) as `W[O, K] @ cols[K, N*Y*X]` in `ct`, K the weight's
    (c, i, j) in `k_order` as in `_implicit_gemm` (`W` the weight tile
    collapsed, or `weight_rows` copied so by the caller): `cols` the padded
    input's patches gathered in its own type, the product one
    `linalg.generic` whose innermost loop runs over the N*Y*X output pixels,
    contiguous in `cols` and the result, so LLVM vectorises it whatever the
    output's width (over output rows alone, 16 pixels, an int8 conv ran at a
    tenth of the rate of one 32 pixels wide). Each output sums over K in
    order, exactly in an integer `ct`. Several images (N > 1) are transposed
    from `[O, N, Y, X]` to the output's layout after it.
    """
    wshape = shape(op.weight)
    o_count, k = wshape[0], math.prod(wshape[1:])
    pixels = out_shape[0] * out_shape[2] * out_shape[3]
    cols = _patch_columns(em, op, xp, out_shape, k_order, None)
    rows = weight_rows if weight_rows is not None else em.reshape(w, [o_count, k])

    def body(e: Emitter, a, b, acc):
        return e.add_(acc, e.mul(e.convert(a, ct), e.convert(b, ct)))

    o_, k_, p_ = dim(0), dim(1), dim(2)
    total = em.generic([rows, cols], [AffineMap(3, 0, (o_, k_)), AffineMap(3, 0, (k_, p_))], [o_count, pixels], ct,
                       body, rank=3, out_map=AffineMap(3, 0, (o_, p_)), iterators=[PARALLEL, REDUCTION, PARALLEL],
                       init=em.fill(0, [o_count, pixels], ct))
    return _product_output(em, total, out_shape)


def _patch_columns(em: Emitter, op: g.Conv2DOp, xp: SSAValue, out_shape: Sequence[int], k_order: Sequence[int],
                   packing: tuple[int, int] | None) -> SSAValue:
    """
    The convolution product's `cols` (im2col): one `linalg.generic` gathering `xp[n, c, y*sh + i*dh,
    x*sw + j*dw]` at row (c, i, j) in `k_order`, column (n, y, x): `[K, N*Y*X]` row-major, or, with
    `packing` (`implicit_gemm_packing`), `[N*Y*X / nr, K, nr]` in strips of `nr = ry * rx` columns.
    """
    sh, sw = op.strides.get_values()
    dh, dw = op.dilations.get_values()
    wshape = shape(op.weight)
    images, _, ys, xs = out_shape
    k, pixels = math.prod(wshape[1:]), images * ys * xs
    kdims = [wshape[d] for d in k_order]
    if packing is None:
        # Loop dims: K's three (in k_order), then n, y, x.
        where = {d: dim(list(k_order).index(d)) for d in (1, 2, 3)}
        n_, y_, x_ = dim(3), dim(4), dim(5)
        loops, patch_shape, cols_shape = 6, [*kdims, images, ys, xs], [k, pixels]
    else:
        # Loop dims: the strip's image, output rows and columns (outer), K's
        # three (in k_order), then the rows and columns within the strip.
        ry, rx = packing
        where = {d: dim(3 + list(k_order).index(d)) for d in (1, 2, 3)}
        n_, y_, x_ = dim(0), dim(1) * ry + dim(6), dim(2) * rx + dim(7)
        loops, patch_shape = 8, [images, ys // ry, xs // rx, *kdims, ry, rx]
        cols_shape = [pixels // (ry * rx), k, ry * rx]
    c_, i_, j_ = where[1], where[2], where[3]
    patches = em.generic([xp], [AffineMap(loops, 0, (n_, c_, y_ * sh + i_ * dh, x_ * sw + j_ * dw))],
                         patch_shape, elem(xp), lambda e, a, _out: a)
    return em.reshape(patches, cols_shape)


def _product_output(em: Emitter, total: SSAValue, out_shape: Sequence[int]) -> SSAValue:
    """A convolution product's `[O, N*Y*X]` as the output tile `[N, O, Y, X]`: reshaped, and for several
    images (N > 1) transposed from `[O, N, Y, X]` (one more copy)."""
    images, o_count, ys, xs = out_shape
    if images == 1:
        return em.reshape(total, list(out_shape))
    return transpose(em, em.reshape(total, [o_count, images, ys, xs]), [1, 0, 2, 3])


def implicit_gemm_block(op: g.Conv2DOp) -> tuple[int, int] | None:
    """The micro-kernel's register block for `_implicit_gemm` of `op`'s tiles, or None where it does not apply."""
    if op.groups.value.data != 1 or not (elem(op.input) == elem(op.weight) == elem(op.result) == f32):
        return None
    n, _, ys, xs = shape(op.result)
    o_count, cg, kh, kw = shape(op.weight)
    return micro_kernel((o_count, cg * kh * kw), (cg * kh * kw, n * ys * xs), f32, f32, f32)


def implicit_gemm_packing(op: g.Conv2DOp) -> tuple[int, int] | None:
    """
    `(ry, rx)`: the output rows and columns one strip of `cols` covers where
    `_implicit_gemm` gathers the patches packed by strips of `nr` columns
    (`nr = ry * rx`: a strip is `rx` consecutive columns of one output row,
    or `ry` whole rows, of one image), or None where no strip maps onto an
    output rectangle (Y*X not a multiple of `nr`, or neither of X and `nr`
    a multiple of the other): then `cols` is gathered row-major.
    """
    block = implicit_gemm_block(op)
    if block is None:
        return None
    nr = block[1] * VL
    _, _, ys, xs = shape(op.result)
    if (ys * xs) % nr:
        return None
    if xs % nr == 0:
        return 1, nr
    if nr % xs == 0:
        return nr // xs, xs
    return None


def _implicit_gemm(em: Emitter, op: g.Conv2DOp, xp: SSAValue, w: SSAValue, out_shape: Sequence[int],
                   weight_rows: SSAValue | None = None, k_order: Sequence[int] = (1, 2, 3)) -> SSAValue | None:
    """
    An f32 convolution, ungrouped, as the GEMM micro-kernel's
    `W[O, K] @ cols[K, N*Y*X]` (`Emitter.vector_matmul`), K the weight's
    (c, i, j) in `k_order` (dims of the weight, 1: c, 2: i, 3: j): `W` is
    the weight tile collapsed (no copy), or `weight_rows` where the caller
    holds the weight in that order already (a weight buffer in (o, i, j,
    c) order, `_KernelExporter.conv_weight`); `cols` the padded input's
    patches (im2col: one `linalg.generic` gathering `xp[n, c, y*sh + i*dh,
    x*sw + j*dw]` at row (c, i, j) in K's order, column (n, y, x)), written
    packed by column strips where `implicit_gemm_packing` allows, so that the
    micro-kernel reads each strip as one sequential stream: a row-major
    `cols` whose rows are a power of two apart (Y*X = 256: 1 KiB) maps a
    strip's K rows onto a few L1 sets, which evict each other (measured: a
    16-channel 3x3 conv at 16x16 ran at 0.22 of the peak, at 15x15 and
    20x20 at 0.4); the result `[O, N*Y*X]` the output tile reshaped, and
    where the tile holds several images (N > 1), transposed to `[N, O, Y,
    X]` (one more copy: so a batch costs at least its images one by one).
    Each output sums over K in order, with fused multiply-adds; its vectors
    run along the output's columns (masked where N*Y*X is not a multiple of
    16). None where it does not apply (another dtype, groups).
    """
    block = implicit_gemm_block(op)
    if block is None:
        return None
    wshape = shape(op.weight)
    o_count, k = wshape[0], math.prod(wshape[1:])
    pixels = out_shape[0] * out_shape[2] * out_shape[3]
    rows = weight_rows if weight_rows is not None else em.reshape(w, [o_count, k])
    packing = implicit_gemm_packing(op)
    cols = _patch_columns(em, op, xp, out_shape, k_order, packing)
    total = em.vector_matmul(rows, cols, em.fill(0, [o_count, pixels], f32), block, packed=packing is not None)
    return _product_output(em, total, out_shape)


def pool2d(em: Emitter, op: g.Pool2DOp, x: SSAValue) -> SSAValue:
    kh, kw = op.kernel.get_values()
    sh, sw = op.strides.get_values()
    pt, pl, pb, pr = op.pads.get_values()
    out_shape, out_elem = shape(op.result), elem(op.result)
    height, width = shape(x)[2:]
    is_max = isinstance(op, g.MaxPool2DOp)
    ct = compute_type(out_elem)
    if not is_max and not is_float(ct):
        ct = f64
    x = em.pad(x, [0, 0, pt, pl], [0, 0, pb, pr], lowest(elem(x)) if is_max else 0)
    n_, c_, i_, j_, y_, x_ = (dim(k) for k in range(6))
    x_map = AffineMap(6, 0, (n_, c_, y_ * sh + i_, x_ * sw + j_))
    # A shape-only window operand gives the reduction dims their extent (as
    # in linalg's named pooling ops).
    window = em.empty([kh, kw], ct)

    def body(e: Emitter, a, _w, acc):
        v = e.convert(a, ct)
        if not is_max:
            return e.add_(acc, v)
        if not is_float(ct):
            return e.max_(acc, v)
        # NaN-propagating as `maximumf`, as a compare and a select, which LLVM vectorises along
        # the output's row where it leaves `maximumf` scalar: ResNet-18's (HW=64 W0=16) 16 x 32 x 32
        # max pool 48 -> 17 us, a 32 x 64 x 64 one 179 -> 128 us (the Zen 4 guest, 1 thread).
        takes = e.v(arith.OrIOp(e.cmpf(v, acc, "ogt"), e.cmpf(v, v, "uno")))
        return e.select(takes, v, acc)

    total = em.generic(
        [x, window], [x_map, AffineMap(6, 0, (i_, j_))], out_shape, ct, body, rank=6,
        out_map=AffineMap(6, 0, (n_, c_, y_, x_)),
        iterators=[PARALLEL] * 2 + [REDUCTION] * 2 + [PARALLEL] * 2, init=em.fill(lowest(ct) if is_max else 0, out_shape, ct),
    )
    if is_max:
        return em.cast(total, out_elem)

    # Padded cells are not counted: count = rows inside x cols inside.
    def average(e: Emitter, s, _out):
        def inside(d: int, stride: int, pad: int, k: int, extent: int) -> SSAValue:
            start = e.v(arith.SubiOp(e.v(arith.MuliOp(e.loop_index(d), e.index(stride))), e.index(pad)))
            hi = e.v(arith.MinSIOp(e.v(arith.AddiOp(start, e.index(k))), e.index(extent)))
            lo = e.v(arith.MaxSIOp(start, e.index(0)))
            return e.v(arith.SubiOp(hi, lo))

        count = e.v(arith.MuliOp(inside(2, sh, pt, kh, height), inside(3, sw, pl, kw, width)))
        count = e.convert(e.v(arith.IndexCastOp(count, i64)), ct)
        return e.convert(e.div(s, count), out_elem)

    return em.generic([total], [identity(4)], out_shape, out_elem, average)


def gather(em: Emitter, table: SSAValue, ids: SSAValue, out_shape: Sequence[int]) -> SSAValue:
    """`out[i..., j...] = table[clip(ids[i...]), j...]`."""
    n_ids = len(shape(ids))
    rank = len(out_shape)
    rows = shape(table)[0]

    def body(e: Emitter, id_, _out):
        row = e.v(arith.IndexCastOp(id_, IndexType()))
        row = e.v(arith.MaxSIOp(e.v(arith.MinSIOp(row, e.index(rows - 1))), e.index(0)))
        rest = [e.loop_index(d) for d in range(n_ids, rank)]
        return e.v(tensor.ExtractOp(table, [row, *rest], elem(table)))

    return em.generic([ids], [AffineMap(rank, 0, tuple(dim(d) for d in range(n_ids)))], out_shape, elem(table), body)


def transpose(em: Emitter, x: SSAValue, perm: Sequence[int]) -> SSAValue:
    # out[i] = x[j] with j[perm[d]] = i[d].
    inverse = [0] * len(perm)
    for d, p in enumerate(perm):
        inverse[p] = d
    out_shape = [shape(x)[p] for p in perm]
    return em.generic(
        [x], [AffineMap(len(perm), 0, tuple(dim(inverse[k]) for k in range(len(perm))))], out_shape, elem(x),
        lambda e, a, _o: a,
    )


def concat(em: Emitter, xs: Sequence[SSAValue], axis: int, out_shape: Sequence[int]) -> SSAValue:
    """
    Each operand copied by a `linalg.generic` into its slice of the output
    (destination-passing: bufferization writes it in place): a plain
    `tensor.insert_slice` of a value into a strided slice becomes a
    `memref.copy` that MLIR lowers to its generic runtime `memrefCopy`
    (8 to 9 clocks an element, measured on Llama's KV-head concatenations),
    where the generic's loops are LLVM's to vectorise along the contiguous dim;
    f32 rows of whole vectors along the last dim by vectors (`_concat_rows`).
    """
    out = em.empty(out_shape, elem(xs[0]))
    if axis == len(out_shape) - 1 and elem(xs[0]) == f32 and all(shape(x)[-1] % VL == 0 for x in xs):
        return _concat_rows(em, xs, out)
    offset = 0
    for x in xs:
        offsets = [0] * len(out_shape)
        offsets[axis] = offset
        slot = em.extract_slice(out, offsets, shape(x))
        rank = len(shape(x))
        copied = em.generic([x], [identity(rank)], shape(x), elem(x), lambda e, a, _out: a, init=slot)
        out = em.insert_slice(copied, out, offsets)
        offset += shape(x)[axis]
    return out


def _concat_rows(em: Emitter, xs: Sequence[SSAValue], out: SSAValue) -> SSAValue:
    """
    `concat`'s f32 operands along the last dim, in whole vectors: row by row (the leading dims
    collapsed), each operand's vectors read and written at its columns of the row. A generic's
    short row LLVM unrolls and then copies element by element (RoPE's halves of 32: 0.5 clocks
    an element).
    """
    out_shape = shape(out)
    rows = math.prod(out_shape[:-1])
    parts = [em.reshape(x, [rows, shape(x)[-1]]) for x in xs]
    flat = em.reshape(out, [rows, out_shape[-1]])

    def row(e: Emitter, r: SSAValue, dest: SSAValue) -> SSAValue:
        offset = 0
        for part in parts:
            width = shape(part)[-1]
            start = offset

            def one(e2: Emitter, c: SSAValue, dest2: SSAValue, part=part, start=start) -> SSAValue:
                column = e2.v(arith.AddiOp(c, e2.index(start))) if start else c
                return e2.write_vector(e2.read_vector(part, [r, c]), dest2, [r, column])

            dest = e.along_vectors(width, dest, one)
            offset += width
        return dest

    return em.reshape(em.for_(0, rows, 1, flat, row), list(out_shape))


CONCAT_UNROLLED_VECTORS = 8
"""The most vectors of a row that `Emitter.along_vectors` unrolls (a concatenation's operand,
a gathered row); wider rows are a loop."""


def constant(em: Emitter, op: g.ConstantOp) -> SSAValue:
    t = elem(op.result)
    value = op.value.value.data
    if is_f8(logical(op.result)):
        return em.fill(f8_bits(value, logical(op.result)), shape(op.result), t)
    if not is_float(t):
        value = int(value)
    return em.fill(value, shape(op.result), t)


def quantize(em: Emitter, op: g.QuantizeOp, args: Sequence[SSAValue]) -> SSAValue:
    """
    ONNX QuantizeLinear, as the reference: `x / scale` in f32, rounded half
    to even, plus the zero point (in f64, exact), saturated to the dtype's
    range (NaN gives the zero point); to f8, `x / scale` saturated to the
    largest finite value and rounded to nearest even.
    """
    out, t = logical(op.result), elem(op.result)
    types = [logical(v) for v in op.operands]

    def body(e: Emitter, x, scale, *rest):
        scaled = e.div(e.convert_logical(x, types[0], f32), e.convert_logical(scale, types[1], f32))
        if is_float(out):
            top = e.scalar(highest_finite(out), f32)
            clipped = e.select(e.cmpf(scaled, top, "ogt"), top, scaled)
            bottom = e.neg(top)
            return e.convert_logical(e.select(e.cmpf(clipped, bottom, "olt"), bottom, clipped), f32, out)
        lo, hi = integer_range(out)
        value = e.convert(e.v(mathd.RoundEvenOp(scaled)), f64)
        zero_point = e.convert_logical(rest[0], types[2], f64) if rest else e.scalar(0.0, f64)
        value = e.add_(value, zero_point)
        value = e.select(e.cmpf(value, e.scalar(float(hi), f64), "ogt"), e.scalar(float(hi), f64), value)
        value = e.select(e.cmpf(value, e.scalar(float(lo), f64), "olt"), e.scalar(float(lo), f64), value)
        value = e.select(e.cmpf(value, value, "uno"), zero_point, value)
        return e.v(arith.TruncIOp(e.v(arith.FPToSIOp(value, IntegerType(32))), t))

    return em.mapped(args, shape(op.result), t, lambda e, *xs: body(e, *xs[: len(args)]))


def dequantize(em: Emitter, op: g.DequantizeOp, args: Sequence[SSAValue], widened: Attribute | None = None) -> SSAValue:
    """
    ONNX DequantizeLinear, as the reference: `(q - zero_point) * scale` in f32 (the difference exact
    in `difference_type`), rounded once to the result's type; then converted to `widened` in the same loop (the
    cast that is its one use, `cpu.widened_dequantize`) where given.
    """
    types = [logical(v) for v in op.operands]
    result = logical(op.result)
    t = storage_type(widened) if widened is not None else elem(op.result)

    def body(e: Emitter, q, scale, *rest):
        if is_float(types[0]):
            shifted = e.convert_logical(q, types[0], f32)
        else:
            exact = difference_type(types[0])
            wide = e.convert_logical(q, types[0], exact)
            if rest:
                wide = e.sub(wide, e.convert_logical(rest[0], types[2], exact))
            shifted = e.v(arith.SIToFPOp(wide, f32))
        product = e.mul(shifted, e.convert_logical(scale, types[1], f32))
        if isinstance(result, BFloat16Type) and widened == f32:
            # Rounded to bf16 and widened back in one: the rounded bits are the f32's.
            return e.v(arith.BitcastOp(e.bf16_bits(product), f32))
        value = e.convert_logical(product, f32, result)
        return value if widened is None else e.convert_logical(value, result, widened)

    return em.mapped(args, shape(op.result), t, lambda e, *xs: body(e, *xs[: len(args)]))


def dequantized_rows(scale: SSAValue, finite: bool = False) -> Widen:
    """
    The `Widen` of a dequantize to bf16 of an i4 or i8 tile that the micro-kernel reads
    (`cpu.widened_as_read`): each vector of the tile (held in i8) to f32, times its columns'
    scales (`scale`: one per column of `b`, or one for all), rounded to bf16 as the reference
    rounds it (`Emitter.bf16_bits`) and kept in f32: `dequantize`'s values, in the registers.
    `finite`: every scale is finite (`Emitter.all_finite`), so no product of one and an integer
    is a NaN and the rounding needs no NaN test (4 of the 15 vector operations per 16 weights).
    """
    per_column = list(shape(scale)) not in ([], [1])
    in_bounds = not per_column or shape(scale)[0] % VL == 0

    def widen(e: Emitter, raw: SSAValue, column: SSAValue) -> SSAValue:
        vt, i32 = like(raw.type, f32), like(raw.type, IntegerType(32))
        # Sign-extended by an arithmetic shift down from the upper byte; to f32 exactly by adding
        # 1.5 * 2^23 to the integer's bits (|q| < 2^22), no `sitofp` (xDSL's takes no vectors).
        wide = e.v(arith.ShRSIOp(e.into_upper_bits(raw), e.scalar(24, i32)))
        magic = e.v(arith.BitcastOp(e.add_(wide, e.scalar(INTEGER_BIAS_BITS, i32)), vt))
        value = e.sub(magic, e.scalar(INTEGER_BIAS, vt))
        scales = (e.read_vector(scale, [column], in_bounds) if per_column
                  else e.v(vector.BroadcastOp(e.first(scale), vt)))
        return e.v(arith.BitcastOp(e.bf16_bits(e.mul(value, scales), never_nan=finite), vt))

    return widen


def like(t: Attribute, element: Attribute) -> Attribute:
    """`element`, or a vector of it shaped as `t` where `t` is a vector type."""
    return VectorType(element, t.get_shape()) if isinstance(t, VectorType) else element


def difference_type(t: Attribute) -> IntegerType:
    """
    The signed type in which `q - zero_point` of integer type `t` is exact: i32 up to 16 bits (the
    difference then also converts to f32 exactly, and vectors hold 16 lanes of it, not 8), else i64.
    """
    return IntegerType(32) if t.width.data <= 16 else i64


def highest_finite(t: Attribute) -> float:
    """The largest finite value of a float type (f8e4m3: 448, f8e5m2: 57344)."""
    if isinstance(t, Float8E4M3FNType):
        return 448.0
    if isinstance(t, Float8E5M2Type):
        return 57344.0
    raise ExportError(f"no saturating quantization to {t}")


def integer_range(t: Attribute) -> tuple[int, int]:
    """The values of a logical integer type (`i4`: -8..7, `u8`: 0..255)."""
    if is_unsigned(t):
        return 0, 2**t.width.data - 1
    return -(2 ** (t.width.data - 1)), 2 ** (t.width.data - 1) - 1


def widened(em: Emitter, op: Operation, args: Sequence[SSAValue], to: Attribute) -> list[SSAValue]:
    """`args` of `op` converted from their logical types to `to` where any is held in another type (`is_held`)."""
    types = [logical(v) for v in op.operands]
    if not any(is_held(t) for t in types):
        return list(args)
    return [em.elementwise(lambda e, a, src=src: e.convert_logical(a, src, to), shape(a), storage_type(to), a, raw=True)
            for a, src in zip(args, types)]


UNSIGNED = {
    g.ReluOp: lambda em, x: x,
    g.AbsOp: lambda em, x: x,
    g.MaximumOp: lambda em, a, b: em.v(arith.MaxUIOp(a, b)),
    g.MinimumOp: lambda em, a, b: em.v(arith.MinUIOp(a, b)),
}
"""Ops that read `u8` operands (held in i8) unsigned; other `u8` arithmetic wraps as on i8."""


def lower_graph_op(em: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    """The upstream values computing graph op `op` on tensor operands `args`."""
    kind = type(op)
    unsigned = any(is_unsigned(logical(v)) for v in op.operands)
    if unsigned and (kind in (g.DivOp, g.PowOp, g.MaxPool2DOp, g.AvgPool2DOp, g.GlobalAvgPoolOp)
                     or kind in REDUCE_KIND):
        raise ExportError(f"export-mlir does not support '{op.name}' on u8 values; cast them to i32 first")
    f8 = any(is_f8(logical(v)) for v in (*op.operands, *op.results))
    if f8 and (kind in (g.SoftmaxOp, g.LogSoftmaxOp, g.LayerNormOp, g.RmsNormOp, g.CausalMaskOp, g.MaxPool2DOp,
                        g.AvgPool2DOp, g.GlobalAvgPoolOp) or kind in REDUCE_KIND
               or (kind is g.Conv2DOp and is_f8(logical(op.result)))):
        raise ExportError(f"export-mlir does not support '{op.name}' on f8 values; cast them to f32 first")
    if f8 and (kind in BINARY or kind in UNARY):
        # In f32, rounded to the result's dtype once (the reference's rule).
        fn = BINARY.get(kind) or UNARY[kind]
        types, out = [logical(v) for v in op.operands], logical(op.result)
        return [em.elementwise(
            lambda e, *xs: e.convert_logical(fn(e, *(e.convert_logical(x, t, f32) for x, t in zip(xs, types))), f32, out),
            shape(op.result), elem(op.result), *args, raw=True)]
    if kind in BINARY or kind in UNARY:
        fn = UNSIGNED[kind] if unsigned and kind in UNSIGNED else BINARY.get(kind) or UNARY[kind]
        result = em.elementwise(lambda e, *xs: fn(e, *xs), shape(op.result), elem(op.result), *args)
        if is_i4(logical(op.result)):
            # i4 arithmetic wraps modulo 16 (the reference's `to_i4`), not 256.
            result = em.elementwise(lambda e, a: e.wrap_i4(a), shape(op.result), elem(op.result), result, raw=True)
        return [result]
    if kind is g.CastOp:
        src, to = logical(op.input), logical(op.result)
        if src == to:
            return [args[0]]
        return [em.elementwise(lambda e, a: e.convert_logical(a, src, to), shape(op.result), elem(op.result), args[0],
                               raw=True)]
    if kind is g.QuantizeOp:
        return [quantize(em, op, args)]
    if kind is g.DequantizeOp:
        return [dequantize(em, op, args)]
    if kind is g.ConstantOp:
        return [constant(em, op)]
    if kind is g.MatmulOp:
        out = logical(op.result)
        if is_f8(out):
            a, b = widened(em, op, args, f32)
            product = em.matmul(a, b, f32)
            return [em.elementwise(lambda e, x: e.f32_to_f8(x, out), shape(op.result), elem(op.result), product,
                                   raw=True)]
        a, b = widened(em, op, args, compute_type(elem(op.result)))
        return [em.matmul(a, b, elem(op.result))]
    if kind in REDUCE_KIND:
        return [lower_reduction(em, op, args[0])]
    if kind in (g.SoftmaxOp, g.LogSoftmaxOp):
        return [softmax(em, args[0], op.axis.value.data, elem(op.result), kind is g.LogSoftmaxOp)]
    if kind in (g.LayerNormOp, g.RmsNormOp):
        rest = iter(args[1:])
        scale = next(rest) if op.scale is not None else None
        bias = next(rest) if kind is g.LayerNormOp and op.bias is not None else None
        return [layernorm(em, op, args[0], scale, bias, elem(op.result))]
    if kind is g.CausalMaskOp:
        s, t = shape(args[0])[-2:]
        return [causal_mask(em, args[0], em.index(t - s), em.index(0))]
    if kind is g.Conv2DOp:
        x, w = widened(em, op, args[:2], compute_type(elem(op.result)))
        return [conv2d(em, op, x, w, args[2] if op.bias is not None else None)]
    if kind in (g.MaxPool2DOp, g.AvgPool2DOp):
        return [pool2d(em, op, args[0])]
    if kind is g.GlobalAvgPoolOp:
        return [mean(em, args[0], [2, 3], True, elem(op.result))]
    if kind is g.GatherOp:
        return [gather(em, args[0], args[1], shape(op.result))]
    if kind is g.TransposeOp:
        return [transpose(em, args[0], op.perm.get_values())]
    if kind is g.ReshapeOp:
        return [em.reshape(args[0], shape(op.result))]
    if kind is g.ConcatOp:
        return [concat(em, args, op.axis.value.data, shape(op.result))]
    if kind is g.SliceOp:
        axis = op.axis.value.data
        offsets = [0] * len(shape(args[0]))
        offsets[axis] = op.start.value.data
        return [em.extract_slice(args[0], offsets, shape(op.result))]
    if kind is g.SplitOp:
        axis = op.axis.value.data
        out = []
        for i, result in enumerate(op.outputs):
            offsets = [0] * len(shape(args[0]))
            offsets[axis] = i * shape(result)[axis]
            out.append(em.extract_slice(args[0], offsets, shape(result)))
        return out
    raise ExportError(f"export-mlir does not support '{op.name}'")
