"""place-chips: runs of kernels per chip, cut where the fewest bytes cross; decisions lower-to-hardware reads."""

import pytest

from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.compiler.ir import make_context, parse_module, print_module
from strata.compiler.pipeline import parse_pipeline
from strata.dialects import loop
from strata.dialects.vocabulary import CHIP_ATTR, CHIPS_ATTR, SHARDS_ATTR
from strata.passes.place_chips import assign_chips
from tests.support import REDUCED


class _Value:
    def __init__(self, size):
        from xdsl.dialects.builtin import MemRefType, f32

        self.type = MemRefType(f32, [size // 4])


class _Kernel:
    def __init__(self, *ins):
        self.ins = ins


def test_assign_chips_fills_then_moves_on_and_shards_what_does_not_fit():
    w = [_Value(40), _Value(40), _Value(400), _Value(40)]
    roots = {v: v for v in w}
    kernels = [_Kernel(w[0]), _Kernel(w[1]), _Kernel(w[1]), _Kernel(w[2]), _Kernel(w[3])]
    # 100-byte chips: 40 + 40 on chip 0, reuse of w[1] costs nothing, 400 bytes shard over 4 chips.
    assert assign_chips(kernels, roots, 100, 0) == [(0, 1), (0, 1), (0, 1), (1, 4), (5, 1)]
    # Spreading over 2 chips puts each weight on its own chip.
    assert assign_chips(kernels[:2], roots, 100, 2) == [(0, 1), (1, 1)]


def test_assign_chips_cuts_where_the_fewest_bytes_cross():
    """Filling in turn would cut after the second kernel (90 + 50 > 100), where
    1000 bytes cross; the cut after the first, where 10 cross, fits as well."""
    w = [_Value(52), _Value(40), _Value(52)]
    roots = {v: v for v in w}
    kernels = [_Kernel(x) for x in w]
    crossing = [0, 10, 1000, 0]
    assert assign_chips(kernels, roots, 100, 0, crossing) == [(0, 1), (1, 1), (1, 1)]
    assert assign_chips(kernels, roots, 100, 0, [0, 1000, 10, 0]) == [(0, 1), (0, 1), (1, 1)]
    # Three chips pinned: one kernel each, whatever crosses.
    assert assign_chips(kernels, roots, 100, 3, crossing) == [(0, 1), (1, 1), (2, 1)]
    # Nothing crossing: the lighter heaviest chip (52 | 40 + 52 rather than 92 | 52 is not lighter: tie on 92).
    assert assign_chips(kernels, roots, 100, 2) in ([(0, 1), (1, 1), (1, 1)], [(0, 1), (0, 1), (1, 1)])


def test_gpt2_on_the_lpu_cuts_between_blocks():
    """Only the residual stream crosses a cut between two blocks: one transfer per cut."""
    from strata.compiler.frontend import load_model

    module = load_model("samples/gpt2.model", {"S": 64})
    compile_module(module, "lpu", Stage.HARDWARE)
    transfers = [op for op in module.walk() if op.name == "tsp.transfer"]
    chips = {op.chip.value.data for op in module.walk() if op.name == "tsp.program"}
    assert len(chips) >= 2 and len(transfers) == len(chips) - 1


def test_placement_is_written_as_attributes_lower_to_hardware_reads():
    module = load_model("samples/gpt2.model", REDUCED["gpt2"])
    compile_module(module, "lpu", Stage.LOOP)
    parse_pipeline("place-chips{chips=2}").apply(make_context(), module)
    kernels = [op for op in module.walk() if isinstance(op, loop.KernelOp)]
    assert {k.attributes[CHIP_ATTR].value.data for k in kernels} == {0, 1}
    assert all(k.attributes[SHARDS_ATTR].value.data == 1 for k in kernels)
    assert module.attributes[CHIPS_ATTR].value.data == 2
    # A hand-edited placement (everything on chip 0) lowers as edited.
    text = print_module(module).replace("chip = 1 : i64", "chip = 0 : i64")
    edited = parse_module(text, "edited.mlir")
    parse_pipeline("lower-to-hardware").apply(make_context(), edited)
    assert {op.chip.value.data for op in edited.walk() if op.name == "tsp.program"} == {0}
    assert not [op for op in edited.walk() if op.name == "tsp.transfer"]


def test_lower_to_hardware_asks_for_a_placement_on_the_lpu():
    module = load_model("samples/mlp.model", {})
    compile_module(module, "lpu", Stage.LOOP)
    with pytest.raises(ValueError, match="run 'place-chips' before 'lower-to-hardware'"):
        parse_pipeline("lower-to-hardware").apply(make_context(), module)


def test_smaller_sram_needs_more_chips():
    from strata.dialects.device import default_device, with_overrides

    counts = []
    for sram in (None, 230_686_720 // 4):
        device = default_device("lpu") if sram is None else with_overrides(default_device("lpu"), [f"sram_bytes={sram}"])
        module = load_model("samples/gpt2.model", {"S": 64})
        compile_module(module, "lpu", Stage.HARDWARE, device=device)
        counts.append(module.attributes[CHIPS_ATTR].value.data)
    assert counts[1] > counts[0]


@pytest.mark.parametrize("target", ["gpu", "tpu"])
def test_pipeline_stages_on_gpus_and_tpus_run_as_the_reference(target):
    """`place-chips{chips=2}` on a GPU or TPU: two pipeline stages, each kernel with its `chip`, one
    transfer per buffer that crosses, priced over NVLink / ICI; the program still equals the reference."""
    from strata.backends.cost import estimate
    from strata.compiler.execution import loop_interpreter, reference
    from strata.dialects.device import module_device
    from strata.dialects.hardware import HardwareKernelOp, TRANSFER_OPS
    from strata.dialects.vocabulary import CHIP_ATTR
    from tests.support import assert_close, sample_values

    module = load_model("samples/gpt2.model", REDUCED["gpt2"])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.LOOP)
    parse_pipeline("place-chips{chips=2},lower-to-hardware").apply(make_context(), module)
    kernels = [op for op in module.walk() if isinstance(op, HardwareKernelOp)]
    assert {k.attributes[CHIP_ATTR].value.data for k in kernels} == {0, 1}
    moves = [op for op in module.walk() if isinstance(op, TRANSFER_OPS[{"gpu": "simt", "tpu": "systolic"}[target]])]
    assert moves and all((m.from_chip.value.data, m.to_chip.value.data) == (0, 1) for m in moves)
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
    report = estimate(module, module_device(module))
    assert report.chips == 2 and len(report.memory) == 2
    assert [k.kind for k in report.kernels].count("transfer") == len(moves)
