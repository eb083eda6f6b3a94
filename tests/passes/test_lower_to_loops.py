"""lower-to-loops (with assign-layout and tile): every sample, every target, executes as the reference."""

import numpy as np
import pytest
from xdsl.dialects.builtin import UnknownLoc

from compiler import loop_interpreter, reference
from compiler.driver import Stage, compile_module
from compiler.frontend import load_model
from compiler.ir import parse_module, print_module
from compiler.pipeline import parse_pipeline
from dialects import loop
from tests.support import REDUCED, TINY, assert_close, sample_values

@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_sample_runs_the_same_through_loop(name, target):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.LOOP)
    assert any(isinstance(op, loop.KernelOp) for op in module.walk())
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
    # Every op keeps a location.
    assert all(not isinstance(op.location, UnknownLoc) for op in module.walk() if op.name != "builtin.module")
    text = print_module(module)
    assert print_module(parse_module(text, "dump.mlir")) == text


@pytest.mark.parametrize("sizes", ["4,4,4", "8,16,8", "2,3,5"])
@pytest.mark.parametrize("name", ["llama", "resnet18", "vit"])
def test_small_tiles_keep_values(name, sizes):
    """Many tiles, edge tiles and K/key loops of several steps: still the reference."""
    module = load_model(f"samples/{name}.model", TINY[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "tpu", Stage.LAYOUT)
    from compiler.ir import make_context

    parse_pipeline(f"tile{{sizes={sizes}}},lower-to-loops").apply(make_context(), module)
    module.verify()
    loops = [op for op in module.walk() if op.name == "scf.for"]
    assert len(loops) > 10
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
