"""
Quantized tensors in the model language (issue 16, spec "Quantized tensors"):
the `i4` and `u8` dtypes, `quantize`, `dequantize`, `matmul(..., dtype=)`,
`conv2d(..., dtype=)`, integer `relu`/`abs`/`-x`; the graph IR they give and
its round trip; located errors for misuse; the op verifiers on parsed IR.
"""

import textwrap

import pytest
from xdsl.dialects.builtin import IntegerType, Signedness

from strata.compiler.diagnostics import ModelError, StrataError
from strata.compiler.frontend import compile_source
from strata.compiler.ir import parse_module, print_module
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import DTYPES, type_str
from strata.dialects.graph.flops import op_flops
from strata.dialects.vocabulary import element_bytes, type_bytes


def build(source: str):
    return compile_source(textwrap.dedent(source), "t.model")


def ops_of(module, cls):
    return [op for op in module.walk() if isinstance(op, cls)]


def error_text(source: str) -> str:
    with pytest.raises(ModelError) as info:
        build(source)
    return str(info.value)


MIXED = """\
    model m(x: f32[4, 8], a: f8e5m2[4, 8], img: i8[1, 2, 6, 6]) {
      param w: i8[8, 6]
      param sw: f32[6]
      param w4: i4[8, 6]
      param s4: f32[1, 6]
      param b: f8e5m2[8, 6]
      param cw: i8[4, 2, 3, 3]
      param cs: f32[1, 4, 1, 1]
      param cb: i32[4]
      xq = quantize(x, 0.05, dtype=i8)
      y = dequantize(matmul(xq, w, dtype=i32), sw, dtype=bf16)
      u = quantize(x, 0.1, zero_point=128, dtype=u8)
      z = x @ dequantize(w4, s4)
      f = matmul(a, b, dtype=f16)
      c = dequantize(conv2d(img, cw, cb, stride=2, padding=1, dtype=i32), cs)
      return y, u, z, f, c, relu(-abs(xq))
    }
    """


def test_dtypes_are_xdsl_integer_types():
    assert DTYPES["i4"] == IntegerType(4)
    assert DTYPES["u8"] == IntegerType(8, Signedness.UNSIGNED)
    assert str(DTYPES["u8"]) == "ui8"


def test_i4_counts_half_a_byte():
    from strata.dialects.graph.dtypes import tensor_type

    assert element_bytes(DTYPES["i4"]) == 0.5
    assert element_bytes(DTYPES["u8"]) == 1
    assert type_bytes(tensor_type("i4", (8192, 8192))) == 8192 * 8192 // 2
    assert type_bytes(tensor_type("i4", (3,))) == 2  # rounded up to whole bytes
    assert type_bytes(tensor_type("bf16", (4,))) == 8


def test_types_of_a_mixed_quantized_model():
    module = build(MIXED)
    results = [type_str(t) for t in ops_of(module, g.MatmulOp)[0].parent_op().function_type.outputs]
    assert results == ["bf16[4, 6]", "u8[4, 8]", "f32[4, 6]", "f16[4, 6]", "f32[1, 4, 3, 3]", "i8[4, 8]"]
    quantize = ops_of(module, g.QuantizeOp)
    assert [type_str(q.result.type) for q in quantize] == ["i8[4, 8]", "u8[4, 8]"]
    assert quantize[0].zero_point is None and type_str(quantize[1].zero_point.type) == "u8[]"
    matmuls = ops_of(module, g.MatmulOp)
    assert [type_str(m.result.type) for m in matmuls] == ["i32[4, 6]", "f32[4, 6]", "f16[4, 6]"]
    (conv,) = ops_of(module, g.Conv2DOp)
    assert type_str(conv.result.type) == "i32[1, 4, 3, 3]"
    assert op_flops(matmuls[0]) == 2 * 4 * 6 * 8


def test_printed_ir_round_trips():
    text = print_module(build(MIXED), debuginfo=False)
    assert "graph.quantize" in text and "tensor<8x6xi4>" in text and "xui8>" in text
    assert print_module(parse_module(text, "m.mlir"), debuginfo=False) == text


def test_without_dtype_matmul_keeps_the_operand_dtype():
    module = build("""\
        model m(x: i8[2, 4], w: i8[4, 3]) {
          return matmul(x, w), x @ w
        }
        """)
    assert [type_str(m.result.type) for m in ops_of(module, g.MatmulOp)] == ["i8[2, 3]"] * 2


def test_per_channel_zero_point_tensor():
    module = build("""\
        model m(x: f32[2, 4], s: f32[4], z: u8[4]) {
          q = quantize(x, s, z, dtype=u8)
          return dequantize(q, s, z)
        }
        """)
    (dq,) = ops_of(module, g.DequantizeOp)
    assert type_str(dq.zero_point.type) == "u8[4]" and type_str(dq.result.type) == "f32[2, 4]"


ERRORS = [
    pytest.param(
        """\
        model m(x: i8[2, 4]) {
          param w: f32[4, 3]
          return matmul(x, w, dtype=i32)
        }
        """,
        "t.model:3:10: error: operands of matmul have different dtypes: i8[2, 4] and f32[4, 3]"
        " (an integer matmul needs integer operands: quantize the float one)",
        id="float-weight-into-integer-matmul",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          return quantize(x, 0.5, zero_point=1, dtype=f8e4m3)
        }
        """,
        "t.model:2:10: error: quantize to f8e4m3 takes no zero point (only i4, i8, u8 do)",
        id="zero-point-on-f8",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          param s: f32[3]
          return quantize(x, s)
        }
        """,
        "t.model:3:10: error: quantize scale f32[3] does not broadcast to f32[2, 4]",
        id="scale-does-not-broadcast",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          param s: f32[2, 4, 1]
          return quantize(x, s)
        }
        """,
        "t.model:3:10: error: quantize scale f32[2, 4, 1] does not broadcast to f32[2, 4]",
        id="scale-widens-the-input",
    ),
    pytest.param(
        """\
        model m(x: i8[2, 4]) {
          param s: i32[4]
          return dequantize(x, s)
        }
        """,
        "t.model:3:10: error: dequantize scale must be a float tensor, got i32[4]",
        id="integer-scale",
    ),
    pytest.param(
        """\
        model m(x: i8[2, 4], w: i8[4, 3]) {
          return matmul(x, w, dtype=f32)
        }
        """,
        "t.model:2:10: error: matmul of i8 operands gives i32 or i8, not dtype=f32",
        id="integer-matmul-into-float",
    ),
    pytest.param(
        """\
        model m(x: f8e4m3[2, 4], w: f8e4m3[4, 3]) {
          return matmul(x, w, dtype=i32)
        }
        """,
        "t.model:2:10: error: matmul of f8e4m3 operands gives bf16 or f16 or f32 or f8e4m3, not dtype=i32",
        id="f8-matmul-into-integer",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          return quantize(x, 0.5, dtype=i32)
        }
        """,
        "t.model:2:10: error: quantize dtype must be one of f8e4m3, f8e5m2, i4, i8, u8, got i32",
        id="quantize-dtype",
    ),
    pytest.param(
        """\
        model m(x: i8[2, 4]) {
          return dequantize(x, 0.5, dtype=i32)
        }
        """,
        "t.model:2:10: error: dequantize dtype must be a float dtype, got i32",
        id="dequantize-dtype",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          return dequantize(x, 0.5)
        }
        """,
        "t.model:2:10: error: dequantize needs an operand of f8e4m3, f8e5m2, i32, i4, i8, u8, got f32[2, 4]",
        id="dequantize-a-float",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4], z: i8[4]) {
          return quantize(x, 0.5, z, dtype=u8)
        }
        """,
        "t.model:2:10: error: quantize zero point must be u8, got i8[4]",
        id="zero-point-dtype",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          return quantize(x, 0.5, zero_point=8, dtype=i4)
        }
        """,
        "t.model:2:10: error: literal 8 is out of range for i4",
        id="zero-point-out-of-i4",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4], z: u8[]) {
          return quantize(x, 0.5, z, zero_point=3, dtype=u8)
        }
        """,
        "t.model:2:10: error: quantize takes the zero point once: as its third operand or as zero_point=...",
        id="zero-point-twice",
    ),
    pytest.param(
        """\
        model m(x: i8[1, 2, 4, 4], w: i8[3, 2, 3, 3], b: f32[3]) {
          return conv2d(x, w, b, dtype=i32)
        }
        """,
        "t.model:2:10: error: conv2d bias has type f32[3], needs i32[3]",
        id="conv-bias-not-i32",
    ),
    pytest.param(
        """\
        model m(x: i8[2, 4]) {
          return gelu(x)
        }
        """,
        "t.model:2:10: error: gelu needs a float operand, got i8[2, 4]",
        id="gelu-of-integers",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 4]) {
          return x + 300
        }
        """,
        None,
        id="float-literal-still-fine",
    ),
    pytest.param(
        """\
        model m(x: u8[2, 4]) {
          return x + 256
        }
        """,
        "t.model:2:14: error: literal 256 is out of range for u8",
        id="u8-literal-range",
    ),
]


@pytest.mark.parametrize("source, message", ERRORS)
def test_located_errors(source, message):
    if message is None:
        build(source)
        return
    text = error_text(source)
    assert text.splitlines()[0] == message
    assert "^" in text.splitlines()[2]


INVALID_IR = [
    pytest.param(
        "%r = graph.matmul %a, %b : tensor<2x4xi8>, tensor<4x3xi8> -> tensor<2x3xf32>",
        "'graph.matmul' of i8 operands gives i32 or i8, not f32",
        id="matmul-accumulation",
    ),
    pytest.param(
        "%r = graph.quantize %x, %s3 : tensor<3xf32> : tensor<2x4xf32> -> tensor<2x4xi8>",
        "'graph.quantize' scale shape [3] does not broadcast to the input shape [2, 4]",
        id="quantize-scale-shape",
    ),
    pytest.param(
        "%r = graph.quantize %x, %z : tensor<i8> : tensor<2x4xf32> -> tensor<2x4xi8>",
        "'graph.quantize' needs a float operand, got i8",
        id="quantize-integer-scale",
    ),
    pytest.param(
        "%r = graph.quantize %x, %s : tensor<f32> zero_point %z : tensor<i8> : tensor<2x4xf32> -> tensor<2x4xf8E4M3FN>",
        "'graph.quantize' takes a zero point only for i4, i8, u8, not f8e4m3",
        id="quantize-f8-zero-point",
    ),
    pytest.param(
        "%r = graph.quantize %x, %s : tensor<f32> : tensor<2x4xf32> -> tensor<2x4xi32>",
        "'graph.quantize' result dtype must be one of f8e4m3, f8e5m2, i4, i8, u8, got i32",
        id="quantize-result-dtype",
    ),
    pytest.param(
        "%r = graph.dequantize %q, %s : tensor<f32> : tensor<2x4xi8> -> tensor<2x4xi32>",
        "'graph.dequantize' needs a float operand, got i32",
        id="dequantize-result-dtype",
    ),
    pytest.param(
        "%r = graph.dequantize %q, %s : tensor<f32> zero_point %z : tensor<i8> : tensor<2x4xi8> -> tensor<2x3xf32>",
        "'graph.dequantize' result shape [2, 3] should be [2, 4]",
        id="dequantize-shape",
    ),
    pytest.param(
        "%r = graph.gelu %q : tensor<2x4xi8>",
        "'graph.gelu' needs a float operand, got i8",
        id="gelu-integer",
    ),
]


@pytest.mark.parametrize("line, message", INVALID_IR)
def test_verifiers(line, message):
    text = (
        "builtin.module {\n"
        "  func.func @m(%x: tensor<2x4xf32>, %s: tensor<f32>, %q: tensor<2x4xi8>, %z: tensor<i8>,"
        " %a: tensor<2x4xi8>, %b: tensor<4x3xi8>, %s3: tensor<3xf32>) {\n"
        f"    {line}\n"
        "    func.return\n"
        "  }\n"
        "}\n"
    )
    with pytest.raises(StrataError) as info:
        parse_module(text, "bad.mlir")
    assert message in str(info.value)


def test_valid_ir_parses():
    text = (
        "builtin.module {\n"
        "  func.func @m(%x: tensor<2x4xf32>, %s: tensor<1x4xf32>, %z: tensor<4xui8>) {\n"
        "    %q = graph.quantize %x, %s : tensor<1x4xf32> zero_point %z : tensor<4xui8> : tensor<2x4xf32> -> tensor<2x4xui8>\n"
        "    %r = graph.dequantize %q, %s : tensor<1x4xf32> zero_point %z : tensor<4xui8> : tensor<2x4xui8> -> tensor<2x4xbf16>\n"
        "    %n = graph.neg %q : tensor<2x4xui8>\n"
        "    func.return\n"
        "  }\n"
        "}\n"
    )
    module = parse_module(text, "ok.mlir")
    assert len(ops_of(module, g.QuantizeOp)) == 1
