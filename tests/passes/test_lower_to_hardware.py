"""lower-to-hardware: every sample on every target executes as the reference; the mappings hold."""

import math

import pytest
from xdsl.dialects.builtin import UnknownLoc

from strata.compiler.execution import loop_interpreter, reference
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.compiler.ir import make_context, parse_module, print_module
from strata.compiler.pipeline import parse_pipeline
from strata.dialects.vocabulary import CHIPS_ATTR
from strata.dialects import loop
from strata.dialects.hardware import HardwareKernelOp, cpu, simt, systolic, tsp
from strata.dialects.device import default_device
from tests.support import REDUCED, assert_close, sample_values

KERNEL_OPS = {"gpu": simt.KernelOp, "tpu": systolic.ProgramOp, "lpu": tsp.ProgramOp, "cpu": cpu.KernelOp}


def _hardware(name: str, target: str):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.HARDWARE)
    return module, inputs, params, want


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu", "cpu"])
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_sample_runs_the_same_on_hardware(name, target):
    module, inputs, params, want = _hardware(name, target)
    ops = list(module.walk())
    assert not any(isinstance(op, loop.KernelOp) for op in ops)
    kernels = [op for op in ops if isinstance(op, HardwareKernelOp)]
    assert kernels and all(isinstance(k, KERNEL_OPS[target]) for k in kernels)
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
    assert all(not isinstance(op.location, UnknownLoc) for op in ops if op.name != "builtin.module")
    text = print_module(module)
    assert print_module(parse_module(text, "dump.mlir")) == text


def test_gpu_grid_covers_the_iteration_space_within_shared_memory():
    module, *_ = _hardware("gpt2", "gpu")
    for kernel in (op for op in module.walk() if isinstance(op, simt.KernelOp)):
        bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
        parallel = kernel.loop_order.get_values()
        assert math.prod(kernel.grid.get_values()) == math.prod(-(-bounds[d] // tiles[d]) for d in parallel)
        assert 0 < kernel.smem_bytes.value.data <= default_device("gpu")["smem_per_block_bytes"]
        threads = kernel.block.get_values()[0]
        assert threads % 32 == 0 and threads <= 1024
        matrix = kernel.matrix_flops.value.data > 0
        assert list(kernel.mma.get_values()) == ([16, 8, 8] if matrix else [])
        assert any(isinstance(op, simt.MmaOp) for op in kernel.walk()) == matrix


def test_kernel_flops_match_the_graph():
    """The figures read off the loop nest add up to the model's FLOPs (edge tiles padded aside)."""
    from strata.compiler.reports.stats import model_stats

    for target in ("gpu", "tpu", "lpu"):
        module = load_model("samples/mlp.model", {"B": 64})
        graph_flops = model_stats(module).flops
        compile_module(module, target, Stage.HARDWARE)
        kernels = [op for op in module.walk() if isinstance(op, HardwareKernelOp)]
        matrix = sum(k.matrix_flops.value.data for k in kernels)
        assert matrix == 2 * 64 * (784 * 256 + 256 * 10)
        assert graph_flops <= sum(k.flops.value.data for k in kernels) <= graph_flops * 1.05


def test_conv_gemm_view_follows_scalesim():
    module = load_model("samples/resnet18.model", REDUCED["resnet18"])
    compile_module(module, "tpu", Stage.HARDWARE)
    conv = next(op for op in module.walk() if isinstance(op, systolic.ProgramOp) and op.kind.data == "conv")
    # Stem: 3->8 channels, 7x7 stride 2 on 32x32: 16x16 output pixels.
    assert conv.gemm_list() == [(1, 16 * 16, 8, 7 * 7 * 3)]


def test_lpu_splits_over_chips_with_explicit_transfers():
    module, inputs, params, want = _hardware("gpt2", "lpu")
    assert module.attributes[CHIPS_ATTR].value.data == 1
    module = load_model("samples/gpt2.model", REDUCED["gpt2"])
    compile_module(module, "lpu", Stage.LOOP)
    parse_pipeline("place-chips{chips=3},lower-to-hardware").apply(make_context(), module)
    module.verify()
    programs = [op for op in module.walk() if isinstance(op, tsp.ProgramOp)]
    chips = [p.chip.value.data for p in programs]
    assert chips == sorted(chips) and set(chips) == {0, 1, 2}
    transfers = [op for op in module.walk() if isinstance(op, tsp.TransferOp)]
    assert transfers
    for t in transfers:
        # Every moved buffer feeds a program on the chip it was moved to.
        users = [u.operation for u in t.dest.uses if isinstance(u.operation, tsp.ProgramOp)]
        assert users and all(u.chip.value.data == t.to_chip.value.data for u in users)
    for chip in range(3):
        slots = [p.slot.value.data for p in programs if p.chip.value.data == chip]
        assert slots == list(range(len(slots)))
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
