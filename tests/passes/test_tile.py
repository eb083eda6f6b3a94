"""tile: the on-chip footprint it predicts is the one the lowering builds; defaults fit the device."""

import pytest

from strata.compiler import ir
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.dialects import loop
from strata.dialects.device import default_device, with_overrides
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.vocabulary import TILE_ATTR
from strata.passes._figures import kernel_figures
from strata.passes.lower_to_loops import LowerToLoopsPass
from strata.passes.tile import TilePass, device_need, tile_bytes
from tests.support import REDUCED


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu", "cpu"])
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_predicted_footprint_is_the_lowered_one(name, target):
    """
    One footprint: what `tile` counts for a kernel (`tile_bytes`, and the
    part of the device's tile memory it takes, `device_need`) is exactly what
    `lower-to-loops` emits and the hardware lowering checks (loads; on a
    TPU/LPU loads plus accumulators), so a tile the tiler and the tuner
    accept is a kernel the lowering accepts.
    """
    device = default_device(target)
    module = load_model(f"samples/{name}.model", REDUCED[name])
    compile_module(module, target, Stage.LAYOUT)
    TilePass().apply(ir.make_context(), module)
    predicted = {}
    for kernel in module.walk():
        if isinstance(kernel, KernelOp):
            tiles = tuple(kernel.attributes[TILE_ATTR].get_values())
            predicted[kernel.kernel_name.data] = (tile_bytes(kernel, tiles)[0], device_need(kernel, tiles, device))
    LowerToLoopsPass().apply(ir.make_context(), module)
    kernels = [k for k in module.walk() if isinstance(k, loop.KernelOp)]
    assert kernels
    for kernel in kernels:
        figures = kernel_figures(kernel)
        need = figures.onchip_bytes + (0 if target == "gpu" else figures.register_bytes)
        assert predicted[kernel.kernel_name.data] == (figures.onchip_bytes, need), kernel.kernel_name.data


@pytest.mark.parametrize("target, key", [("gpu", "smem_per_block_bytes"), ("tpu", "vmem_bytes"),
                                         ("lpu", "sram_bytes"), ("cpu", "l2_bytes_per_core")])
def test_default_tiles_fit_a_small_device(target, key):
    capacity = 65536
    device = with_overrides(default_device(target), [f"{key}={capacity}"])
    module = load_model("samples/gpt2.model", {"S": 64, "D": 128, "H": 4, "L": 1})
    compile_module(module, target, Stage.LOOP, device=device)
    kernels = [k for k in module.walk() if isinstance(k, loop.KernelOp)]
    for kernel in kernels:
        figures = kernel_figures(kernel)
        assert figures.onchip_bytes + (0 if target == "gpu" else figures.register_bytes) <= capacity


BATCHED = """let B = 64
let D = 1024
let N = 4096
model m(x: bf16[{shape}]) -> bf16[{out}] {{
  param w: bf16[D, N]
  return x @ w
}}
"""


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_batched_rows_against_one_weight_are_one_gemm(target):
    """
    Decode-shaped `[B, 1, D] @ [D, N]`: the row tile spans the batch, so the
    weight streams once per row tile and the kernel costs what the flat
    `[B, D] @ [D, N]` costs (it cost 14x more on the GPU, 55x on the TPU,
    when each batch element was its own GEMM).
    """
    from strata.backends.cost import estimate
    from strata.compiler.frontend import compile_source
    from strata.dialects.device import module_device
    from strata.dialects.hardware import HardwareKernelOp

    costs = {}
    for name, shape, out in (("decode", "B, 1, D", "B, 1, N"), ("flat", "B, D", "B, N")):
        module = compile_source(BATCHED.format(shape=shape, out=out), f"{name}.model")
        compile_module(module, target, Stage.HARDWARE)
        gemm = next(k for k in module.walk() if isinstance(k, HardwareKernelOp) and k.kind.data == "gemm")
        assert gemm.gemm_list() == [(1, 64, 4096, 1024)]
        costs[name] = (next(k for k in estimate(module, module_device(module)).kernels if k.kind == "gemm").time_s,
                       gemm.read_bytes.value.data)
    assert costs["decode"] == pytest.approx(costs["flat"], rel=1e-9)


QUANTIZED_GEMM = """\
model m(x: {x}[128, 256]) {{
  param w: {w}[256, 128]
  param s: f32[1, 128]
  return {expr}
}}
"""


@pytest.mark.parametrize("x, w, expr, floor", [
    ("i8", "i8", "matmul(x, w, dtype=i32)", (64, 32)),
    ("f8e4m3", "f8e4m3", "matmul(x, w, dtype=f32)", (64, 32)),
    # Weight-only: the kernel's first input is the i4 weight, the
    # instruction multiplies bf16.
    ("bf16", "i4", "x @ dequantize(w, s, dtype=bf16)", (32, 16)),
])
def test_gpu_tiles_keep_the_instruction_of_the_matmul_operands(x, w, expr, floor):
    """
    Filling the SMs stops at one tensor-core instruction of the dtype the
    matmul multiplies (issue 16): the s8 shape for i8 and, on a GPU with FP8
    tensor cores, f8 operands; bf16's for `bf16 @ dequantize(i4)`. Distinct
    shapes per dtype (overridden) tell which one the tiler took.
    """
    from strata.compiler.frontend import compile_source

    device = with_overrides(default_device("gpu"), ["mma_shape_i8=[64,32,32]", "mma_shape_bf16=[32,16,16]"])
    module = compile_source(QUANTIZED_GEMM.format(x=x, w=w, expr=expr), "m.model")
    compile_module(module, "gpu", Stage.HARDWARE, device=device)
    (kernel,) = [k for k in module.walk() if k.name == "simt.kernel"]
    assert tuple(kernel.properties["mma"].get_values())[:2] == floor
    assert tuple(kernel.properties["tile_sizes"].get_values())[:2] == floor


@pytest.mark.parametrize("device, tile", [("xeon-spr-2c", (256, 256, 128)), ("epyc-9654", (128, 128, 128))])
def test_cpu_gemm_tile_comes_from_the_caches(device, tile):
    """
    The CPU GEMM tile: k from the L1d (the packed 32-column strip of `b`
    in half of it), rows x columns the power-of-two pair within a quarter of
    the L2 that copies in the least per flop; a bigger L2 grows it.
    """
    from strata.dialects.device import load_device
    from strata.passes.tile import cpu_gemm_tile

    spec = load_device(device)
    rows, columns, k = cpu_gemm_tile(spec)
    assert (rows, columns, k) == tile
    assert k * 32 * 4 <= spec["l1d_bytes_per_core"] // 2
    assert 4 * (rows * k + k * columns + rows * columns) <= spec["l2_bytes_per_core"] // 4
    # Neither dim can double within the budget (each doubling copies in less per flop).
    for r, c in ((2 * rows, columns), (rows, 2 * columns)):
        assert 4 * (r * k + k * c + r * c) > spec["l2_bytes_per_core"] // 4
    bigger = with_overrides(spec, [f"l2_bytes_per_core={4 * spec['l2_bytes_per_core']}"])
    assert cpu_gemm_tile(bigger)[0] * cpu_gemm_tile(bigger)[1] > rows * columns


def test_tpu_gemm_tiles_grow_past_a_plateau():
    """
    257 x 257 in tiles of 128: doubling either dim alone to 256 leaves it in as
    many passes (a 1-row edge tile), so the HBM traffic does not fall; the
    whole dim does. The tiles were 128 x 128 (9 tiles, 2.3x the bytes) while
    385 rows got one whole tile: the bigger GEMM was estimated faster.
    """
    from strata.compiler.frontend import compile_source

    module = compile_source("model g(a: bf16[257, 127], b: bf16[127, 257]) {\n  return a @ b\n}\n", "g.model")
    compile_module(module, "tpu", Stage.LOOP)
    (kernel,) = [k for k in module.walk() if isinstance(k, loop.KernelOp)]
    assert kernel.tile_sizes.get_values() == (257, 257, 127)


@pytest.mark.parametrize("device", ["xeon-spr-2c", "epyc-9654"])
def test_a_cpu_gemm_of_few_rows_takes_tiles_of_its_weights_whole_rows(device):
    """
    `cpu_few_rows_tile`: a batch-2 decode step's `[2, 1024] @ [1024, 4096]` takes b's whole rows and
    the k tile that fills a quarter of the L2 with them, copied as f32; rows too wide for a k tile of
    16 there (11,008 columns) and a GEMM of many rows keep `cpu_gemm_tile`'s tile. (One row reads
    the weight unpacked: `test_a_gemm_of_few_rows_streaming_its_weight_takes_whole_rows_read_in_place`.)
    """
    from strata.compiler.frontend import compile_source
    from strata.dialects.device import load_device
    from strata.passes.tile import cpu_gemm_tile

    spec = load_device(device)
    budget = spec["l2_bytes_per_core"] // 4
    for rows, columns, whole in ((2, 4096, True), (2, 11008, False), (256, 4096, False)):
        module = compile_source(f"model m(h: f32[{rows}, 1024]) {{\n  param w: f32[1024, {columns}]\n  return h @ w\n}}\n",
                                "m.model")
        compile_module(module, "cpu", Stage.LAYOUT, device=spec)
        TilePass().apply(ir.make_context(), module)
        (kernel,) = [op for op in module.walk() if isinstance(op, KernelOp)]
        *_, width, k = kernel.attributes[TILE_ATTR].get_values()
        if whole:
            assert width == columns
            assert 4 * columns * k <= budget < 4 * columns * 2 * k
        else:
            assert (width, k) == cpu_gemm_tile(spec)[1:]


@pytest.mark.parametrize("device", ["xeon-spr-2c", "epyc-9654"])
def test_a_gemm_of_few_rows_streaming_its_weight_takes_whole_rows_read_in_place(device):
    """
    `cpu_few_rows_tile` with `streamed_b`: rows of 11,008 columns are too wide for an f32 k tile of
    16 in a quarter of the L2, but a bf16 weight and an int4 one dequantized to bf16 (widened in the
    micro-kernel's registers), and an f32 one against a single row, are read unpacked: they take
    `loop.STREAMED_ROWS` whole rows, and the loops read each such slab where it lies
    (`loop.reads_in_place`), storing only the f32 accumulator row. An f32 weight against two rows
    keeps `cpu_gemm_tile`'s tile, copied and packed.
    """
    from strata.compiler.frontend import compile_source
    from strata.dialects import loop
    from strata.dialects.device import load_device
    from strata.passes.tile import cpu_gemm_tile

    spec = load_device(device)
    columns = 11008
    weights = {
        "bf16": (1, True, f"  param w: bf16[1024, {columns}]\n  return h @ w\n"),
        "i4": (1, True, f"  param w: i4[1024, {columns}]\n  param s: f32[{columns}]\n"
                        "  return h @ dequantize(w, s, dtype=bf16)\n"),
        "f32": (1, True, f"  param w: f32[1024, {columns}]\n  return cast(h, dtype=f32) @ w\n"),
        "f32, two rows": (2, False, f"  param w: f32[1024, {columns}]\n  return cast(h, dtype=f32) @ w\n"),
    }
    for rows, streamed, body in weights.values():
        module = compile_source(f"model m(h: bf16[{rows}, 1024]) {{\n{body}}}\n", "m.model")
        compile_module(module, "cpu", Stage.LAYOUT, device=spec)
        TilePass().apply(ir.make_context(), module)
        (kernel,) = [op for op in module.walk() if isinstance(op, KernelOp) and op.kind.data == "gemm"]
        *_, width, k = kernel.attributes[TILE_ATTR].get_values()
        compile_module(module, "cpu", Stage.LOOP, device=spec)
        (weight,) = [op for op in module.walk() if isinstance(op, loop.LoadOp) and op.source.type.get_shape()[0] == 1024]
        if not streamed:
            assert (width, k) == cpu_gemm_tile(spec)[1:]
            assert not loop.reads_in_place(weight)
            continue
        assert (width, k) == (columns, loop.STREAMED_ROWS)
        assert loop.reads_in_place(weight) and tuple(weight.result.type.get_shape()) == (loop.STREAMED_ROWS, columns)


def test_a_slab_of_a_weight_with_more_rows_than_the_prefetchers_follow_is_copied():
    """
    `loop.reads_in_place` on a product's `b`: the micro-kernel walks a slab strip by strip, one
    memory stream per row, so a slab of at most `loop.STREAMED_ROWS` rows is read where it lies and
    a taller one (a decode step's output projection, whose k tile takes whole heads) is copied.
    """
    from strata.compiler.frontend import compile_source
    from strata.dialects import loop

    source = "model m(h: bf16[1, 1, 256]) {\n  param w: bf16[256, 64]\n  return h @ w\n}\n"
    for k, in_place in ((loop.STREAMED_ROWS, True), (2 * loop.STREAMED_ROWS, False)):
        module = compile_source(source, "m.model")
        compile_module(module, "cpu", Stage.LAYOUT)
        TilePass(sizes=(64, k)).apply(ir.make_context(), module)
        compile_module(module, "cpu", Stage.LOOP)
        (weight,) = [op for op in module.walk() if isinstance(op, loop.LoadOp) and op.source.type.get_shape()[0] == 256]
        assert tuple(weight.result.type.get_shape()) == (k, 64)
        assert loop.product_rhs(weight.result) and loop.reads_in_place(weight) is in_place
