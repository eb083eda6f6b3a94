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


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
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
                                         ("lpu", "sram_bytes")])
def test_default_tiles_fit_a_small_device(target, key):
    capacity = 65536
    device = with_overrides(default_device(target), [f"{key}={capacity}"])
    module = load_model("samples/gpt2.model", {"S": 64, "D": 128, "H": 4, "L": 1})
    compile_module(module, target, Stage.LOOP, device=device)
    kernels = [k for k in module.walk() if isinstance(k, loop.KernelOp)]
    for kernel in kernels:
        figures = kernel_figures(kernel)
        assert figures.onchip_bytes + (0 if target == "gpu" else figures.register_bytes) <= capacity
