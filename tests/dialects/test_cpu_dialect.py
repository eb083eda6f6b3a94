"""
dialects/hardware/cpu.py: `cpu.kernel` and `cpu.fma` print, re-parse, verify and execute;
the verifier refuses a mapping no run could have.
"""

import re

import pytest

from strata.compiler.driver import Stage, compile_module
from strata.compiler.execution import loop_interpreter, reference
from strata.compiler.frontend import compile_source
from strata.compiler.ir import parse_module, print_module
from strata.dialects.hardware import cpu
from tests.support import assert_close, sample_values

MODEL = """model m(x: f32[40, 64], w: f32[64, 48], v: f32[40, 48]) {
  return tanh(x @ w) + v
}
"""


def _text() -> str:
    module = compile_source(MODEL, "m.model")
    compile_module(module, "cpu", Stage.HARDWARE)
    return print_module(module, debuginfo=False)


def test_round_trips_verifies_and_executes():
    module = compile_source(MODEL, "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    text = _text()
    parsed = parse_module(text, "cpu.mlir")
    assert print_module(parsed, debuginfo=False) == text
    kernels = [op for op in parsed.walk() if isinstance(op, cpu.KernelOp)]
    assert len(kernels) == 1 and kernels[0].block() == (8, 16)
    assert any(isinstance(op, cpu.FmaOp) for op in kernels[0].walk())
    assert kernels[0].transcendentals.value.data == 40 * 48
    assert_close(want, loop_interpreter.run_module(parsed, inputs, params))


@pytest.mark.parametrize("old, new, message", [
    ("threads = 1 : i64", "threads = 2 : i64", "threads must be at most parallel_tiles"),
    ("threads = 1 : i64", "threads = 0 : i64", "threads must be >= 1"),
    ("vector_lanes = 16 : i64", "vector_lanes = 0 : i64", "vector_lanes must be >= 1"),
    ("l2_bytes = ", "l2_bytes = -", "l2_bytes must be >= 0"),
    ("micro_kernel = array<i64: 8, 16>, vector", "micro_kernel = array<i64: 8, 16, 1>, vector",
     "micro_kernel must be empty or"),
    ("{micro_kernel = array<i64: 8, 16>}", "{micro_kernel = array<i64: 0, 16>}", "micro_kernel must be empty or"),
    ('kind = "gemm"', 'kind = "elementwise"', "has no GEMM micro-kernel"),
])
def test_verifier_refuses_impossible_mappings(old, new, message):
    text = _text()
    assert old in text
    with pytest.raises(Exception, match=re.escape(message)):
        parse_module(text.replace(old, new, 1), "cpu.mlir")
