"""
backends/cpu.py: the CPU model's estimates respond to the spec, the shape and the threads as
the machine does; the host's GEMM lands where its runs do (efficiency bounds, no wall clock).
"""

import math

import pytest

from strata.backends import cpu as cpu_model
from strata.backends.cost import estimate
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import compile_source, load_model
from strata.compiler.pipeline import parse_pipeline
from strata.compiler.schedule import apply_schedule
from strata.dialects.device import load_device, module_device, with_overrides
from strata.dialects.graph.layout import LayoutAttr
from strata.dialects.hardware import cpu

GEMM = """model gemm(a: f32[{m}, {k}], b: f32[{k}, {n}]) {{
  return a @ b
}}
"""

ELEMENTWISE = """model ew(x: f32[{n}, 1024]) {{
  return {fn}(x)
}}
"""


def _report(source: str, device=None, threads: int = 1, name: str = "m.model", channels_last: bool = False):
    """The cost report and hardware module of `source`; `channels_last` pins NHWC convolutions (the cpu's are NCHW)."""
    module = compile_source(source, name)
    compile_module(module, "cpu", Stage.HARDWARE, device=device, pipeline=_pipeline(threads, channels_last))
    return estimate(module, module_device(module)), module


def _pipeline(threads: int, channels_last: bool = False):
    from strata.compiler.driver import passes_between

    passes = passes_between("cpu", Stage.GRAPH, Stage.HARDWARE, threads)
    return apply_schedule(passes, {"channels_last": "true"}) if channels_last else passes


def _gemm(m=1024, n=1024, k=1024, **kw):
    return _report(GEMM.format(m=m, n=n, k=k), **kw)


def test_host_gemm_runs_near_the_measured_share_of_the_fma_peak():
    """
    The 1024^3 f32 GEMM: 2.1 GFLOP; the host's code measured 12.5-13.6 ms on one
    core (65-70% of its 244 GFLOP/s peak). The estimate must sit in that band's
    neighbourhood (60-75%), compute-bound, and use the micro-kernel.
    """
    report, module = _gemm()
    (kernel,) = report.kernels
    spec = load_device("xeon-spr-2c")
    efficiency = 2 * 1024**3 / kernel.time_s / cpu_model.core_peak(spec)
    assert 0.60 <= efficiency <= 0.75
    assert kernel.bound == "compute" and kernel.extra["micro_kernel"] == "12x32"
    assert report.total()["time_s"] == pytest.approx(kernel.time_s)


def test_two_threads_share_the_row_tiles():
    one, _ = _gemm()
    two, module = _gemm(threads=2)
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
    # The row tiles (whatever the tile pass picks: an even number of them) are split between the cores.
    tiles = kernel.parallel_tiles.value.data
    assert kernel.threads.value.data == 2 and tiles >= 2 and tiles % 2 == 0
    assert one.time_s / two.time_s == pytest.approx(2.0, rel=0.02)
    # More threads than cores time-share the two cores: no faster.
    four, _ = _gemm(threads=4)
    assert four.time_s >= two.time_s


def test_one_tile_kernels_gain_nothing_from_threads():
    """The MLP's first GEMM pinned to one 64 x 256 output tile (as measured: no 2-thread gain)."""
    times = []
    for threads in (1, 2):
        module = load_model("samples/mlp.model", {})
        passes = apply_schedule(_pipeline(threads), {"sizes": "64,256,0"})
        compile_module(module, "cpu", Stage.HARDWARE, pipeline=passes)
        first = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
        assert first.threads.value.data == 1 == first.parallel_tiles.value.data
        times.append(estimate(module, load_device("xeon-spr-2c")).kernels[0].time_s)
    assert times[0] == times[1]


def test_the_default_tiles_give_every_thread_work_worth_forking_for():
    """
    On 2 threads `tile` cuts the MLP's first GEMM (64 x 784 x 256, 25.7 MFLOP) into one tile per thread,
    which halves its time less the fork; its 10-column head (0.33 MFLOP, about a parallel region's fork
    and join at `PARALLEL_GRAIN` = 10 over 2 threads) and the softmax stay one tile on one thread.
    """
    reports, kernels = [], []
    for threads in (1, 2):
        module = load_model("samples/mlp.model", {})
        compile_module(module, "cpu", Stage.HARDWARE, pipeline=_pipeline(threads))
        kernels.append([(k.threads.value.data, k.parallel_tiles.value.data)
                        for k in module.walk() if isinstance(k, cpu.KernelOp)])
        reports.append(estimate(module, load_device("xeon-spr-2c")))
    assert kernels == [[(1, 1), (1, 1), (1, 1)], [(2, 2), (1, 1), (1, 1)]]
    assert 1.8 < reports[0].kernels[0].time_s / reports[1].kernels[0].time_s < 2.0


def test_gemm_time_follows_the_clock_and_the_shape():
    base, _ = _gemm(m=512, n=512, k=512)
    spec = load_device("xeon-spr-2c")
    fast, _ = _gemm(m=512, n=512, k=512, device=with_overrides(spec, ["clock_hz=7.63e9"]))
    # The FMAs run twice as fast; the tile copies and the output tile's store pass still take the L2's time.
    assert base.kernels[0].extra["compute_s"] / fast.kernels[0].extra["compute_s"] == pytest.approx(2.0, rel=0.02)
    assert 1.7 < base.time_s / fast.time_s < 2.0
    # Twice the K: twice the FLOPs, with the output tile's fixed cost spread over more of them.
    bigger, _ = _gemm(m=512, n=512, k=1024)
    assert 1.7 * base.time_s < bigger.time_s < 2 * base.time_s


def test_ragged_tiles_pay_for_padded_register_blocks():
    """N = 40 fills one 32-wide strip and masks most of a second: worse per FLOP than N = 256."""
    wide, _ = _gemm(m=256, n=256, k=256)
    ragged, _ = _gemm(m=256, n=40, k=256)
    per_flop = [r.time_s / r.kernels[0].flops for r in (wide, ragged)]
    assert per_flop[1] > 1.3 * per_flop[0]


def test_streams_follow_the_bandwidth_once_memory_bound():
    source = ELEMENTWISE.format(n=8192, fn="relu")
    spec = load_device("xeon-spr-2c")
    report, _ = _report(source)
    slow, _ = _report(source, device=with_overrides(spec, ["l3_bandwidth=1e10", "l3_bandwidth_per_core=5e9"]))
    slower, _ = _report(source, device=with_overrides(spec, ["l3_bandwidth=5e9", "l3_bandwidth_per_core=2.5e9"]))
    assert slow.kernels[0].bound == "memory" and slow.time_s > 3 * report.time_s
    assert slower.time_s / slow.time_s == pytest.approx(2.0, rel=0.01)


def test_exponentials_cost_polynomials():
    """An exp-like element is a polynomial (`CYCLES_PER_TRANSCENDENTAL`): with memory out of the way it dominates."""
    relu, _ = _report(ELEMENTWISE.format(n=8192, fn="relu"))
    gelu, module = _report(ELEMENTWISE.format(n=8192, fn="gelu"))
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
    assert kernel.transcendentals.value.data == 8192 * 1024
    assert gelu.kernels[0].extra["compute_s"] > 5 * relu.kernels[0].extra["compute_s"]
    assert gelu.time_s >= relu.time_s
    fast = with_overrides(load_device("xeon-spr-2c"), ["l3_bandwidth=1e13", "l3_bandwidth_per_core=1e13"])
    relu, _ = _report(ELEMENTWISE.format(n=8192, fn="relu"), device=fast)
    gelu, _ = _report(ELEMENTWISE.format(n=8192, fn="gelu"), device=fast)
    assert gelu.time_s > 1.5 * relu.time_s and gelu.kernels[0].bound == "compute"


def test_data_beyond_the_l3_streams_from_dram():
    source = ELEMENTWISE.format(n=8192, fn="relu")
    report, _ = _report(source)
    small_l3, _ = _report(source, device=with_overrides(load_device("xeon-spr-2c"), ["l3_bytes=8388608"]))
    assert "l3" in report.kernels[0].bytes and "dram" in small_l3.kernels[0].bytes
    assert small_l3.time_s > report.time_s


def test_another_cpu_tiles_for_its_caches_and_prices_its_cores():
    spec = load_device("epyc-9654")
    report, module = _gemm(device=spec, threads=96)
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
    # Fewer row tiles than 96 threads: one core per tile, the rest idle, and as many times faster.
    assert kernel.l2_bytes.value.data <= spec["l2_bytes_per_core"]
    tiles = kernel.parallel_tiles.value.data
    assert 1 < tiles < 96 and kernel.threads.value.data == tiles
    one, _ = _gemm(device=spec)
    assert one.time_s / report.time_s == pytest.approx(tiles, rel=0.05)


def test_report_has_the_cpu_columns():
    report, _ = _gemm(m=128, n=128, k=128)
    data = report.as_json()
    assert data["target"] == "cpu" and data["device"] == "xeon-spr-2c"
    kernel = data["kernels"][0]
    assert {"time_s", "threads", "parallel_tiles", "micro_kernel", "compute_s", "memory_s"} <= set(kernel)
    assert data["total"]["time_s"] == pytest.approx(kernel["time_s"])
    assert data["total"]["peak_flops_per_s"] == pytest.approx(cpu_model.core_peak(load_device("xeon-spr-2c")))


def test_pipeline_option_threads_must_be_positive():
    with pytest.raises(Exception, match="threads must be at least 1"):
        module = compile_source(GEMM.format(m=8, n=8, k=8), "m.model")
        compile_module(module, "cpu", Stage.HARDWARE, pipeline=_pipeline(0))
    assert parse_pipeline("lower-to-hardware{threads=2}").passes[0].threads == 2


CONV = """model c(x: f32[1, 16, 16, 16]) {
  param w: f32[32, 16, 3, 3]
  param b: f32[32]
  return relu(conv2d(x, w, b, padding=1))
}
"""


def test_copies_are_costed_by_their_elements_the_weight_relaid_once_at_load():
    """
    The native code relays the input (NCHW -> NHWC) and the result back to NCHW on every call,
    each a `relayout_I` at `CYCLES_PER_RELAYOUT_ELEMENT` clocks per element, in the total; the
    weight (OIHW -> OHWI) once, when the params are loaded: in `at_load`, not in the total
    (channels-last pinned: the cpu's convolutions are channels-first by default, with no relayout).
    """
    report, module = _report(CONV, channels_last=True)
    spec = load_device("xeon-spr-2c")

    def elements(costs):
        return sorted(round(k.extra["compute_s"] * spec["clock_hz"] / cpu_model.CYCLES_PER_RELAYOUT_ELEMENT)
                      for k in costs if k.kind == "relayout")

    assert elements(report.kernels) == [16 * 16 * 16, 32 * 16 * 16]
    assert elements(report.at_load) == [32 * 16 * 3 * 3] and len(report.at_load) == 1
    names = sorted(k.name for k in [*report.kernels, *report.at_load] if k.kind == "relayout")
    assert names == [f"relayout_{i}" for i in range(3)]
    total = report.total()
    assert total["time_s"] == pytest.approx(sum(k.time_s for k in report.kernels))
    assert total["load_time_s"] == pytest.approx(report.at_load[0].time_s) and total["load_time_s"] > 0


def test_an_rms_norm_costs_the_operations_the_export_emits():
    """An RMS norm emits 4 element operations to a layer norm's 7 (both 8 FLOPs by the shared convention)."""
    from strata.backends.cost import hardware_kernels

    layer, layer_module = _report("model n(x: f32[64, 256], g: f32[256], b: f32[256]) {\n  return layernorm(x, g, b)\n}\n")
    rms, rms_module = _report("model n(x: f32[64, 256], g: f32[256]) {\n  return rmsnorm(x, g)\n}\n")
    assert layer.kernels[0].flops == rms.kernels[0].flops
    # Both store the same tile (a pass of the same bytes, `map_work`): the norms' own clocks apart.
    stored = [cpu_model.map_work(cpu_model.body_ops(k), module_device(m))[1] / module_device(m)["clock_hz"]
              for m in (layer_module, rms_module) for k in hardware_kernels(m)]
    assert stored[0] == stored[1] > 0
    ratio = (rms.kernels[0].extra["compute_s"] - stored[1]) / (layer.kernels[0].extra["compute_s"] - stored[0])
    assert ratio == pytest.approx(4 / 7, rel=0.02)


def test_libm_functions_cost_more_than_exponentials():
    """exp is cheap in the export's code, gelu is a polynomial and an exponential, tanh a libm call per element."""
    times = {fn: _report(ELEMENTWISE.format(n=64, fn=fn))[0].kernels[0].extra["compute_s"]
             for fn in ("relu", "exp", "gelu", "tanh")}
    assert times["relu"] < times["exp"] < times["gelu"] < times["tanh"]
    assert times["tanh"] > 10 * times["exp"]


def test_an_unpacked_gemm_runs_at_the_unpacked_ceiling():
    """A GEMM whose `a` is computed in the kernel (a transposed attention output) runs on the micro-kernel
    unpacked: the unpacked ceiling in place of the spec's, the same padding and fill."""
    source = """model p(x: f32[1, 4, 64, 64], w: f32[256, 256]) {
  return reshape(transpose(x, perm=[0, 2, 1, 3]), [1, 64, 256]) @ w
}
"""
    report, module = _report(source)
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp) and k.kind.data == "gemm")
    assert kernel.packed_bytes.value.data == 0 and kernel.block()
    spec = load_device("xeon-spr-2c")
    (mr, nr), (_, m, n, k), (_, rows, columns, k_tile) = (kernel.block(), kernel.bounds.get_values(),
                                                         kernel.tile_sizes.get_values())
    padding = min(rows, m) / (-(-min(rows, m) // mr) * mr) * min(columns, n) / (-(-min(columns, n) // nr) * nr)
    fill = k / (k + cpu_model.MICRO_KERNEL_FILL_STEPS * -(-k // k_tile) + cpu_model.OUTPUT_TILE_FILL_K)
    assert cpu_model.micro_kernel_efficiency(kernel, spec) == pytest.approx(
        cpu_model.UNPACKED_GEMM_EFFICIENCY * padding * fill)
    # A spec that gives its own ceiling (`--device host` solves it) is taken as is, over its packed one.
    solved = with_overrides(spec, ["unpacked_gemm_efficiency=0.9"])
    assert cpu_model.micro_kernel_efficiency(kernel, solved) == pytest.approx(0.9 * padding * fill)


def test_strided_walks_pay_for_the_cache_lines_they_miss():
    """
    NCHW -> NHWC of a 16 x 32 x 32 f32 input stores one 64 B line per element and comes back to a
    line only after 32 x 32 others (64 KiB > the 48 KiB L1d): every element misses. Of 16 x 16 x 16
    (16 KiB) the lines stay in the L1d; in i8 four elements share a line; a logical walk is free.
    """
    spec = load_device("xeon-spr-2c")
    nhwc = LayoutAttr([0, 2, 3, 1])
    per_element = [cpu_model.strided_cycles(nhwc, shape, shape, size, spec)
                   for shape, size in (([1, 16, 32, 32], 4), ([1, 16, 16, 16], 4), ([1, 16, 32, 32], 1))]
    assert per_element == [cpu_model.CYCLES_PER_MISSED_ELEMENT, cpu_model.CYCLES_PER_RELAYOUT_ELEMENT,
                           cpu_model.CYCLES_PER_RELAYOUT_ELEMENT]
    assert cpu_model.strided_cycles(LayoutAttr([0, 1, 2, 3]), [1, 16, 32, 32], [1, 16, 32, 32], 4, spec) == 0
    pool, _ = _report("model p(x: f32[1, 16, 32, 32]) {\n  return maxpool2d(x, kernel=3, stride=2, padding=1)\n}\n",
                      channels_last=True)
    (relayout_in, relayout_out) = (k for k in pool.kernels if k.kind == "relayout")
    assert relayout_in.extra["compute_s"] == pytest.approx(
        cpu_model.CYCLES_PER_MISSED_ELEMENT * 16 * 32 * 32 / spec["clock_hz"])
    (kernel,) = (k for k in pool.kernels if k.kind == "pool")
    assert kernel.extra["copy_s"] > kernel.extra["compute_s"]  # its NCHW tile of the NHWC buffer misses too


def test_walks_of_a_few_elements_beside_a_contiguous_dim_are_interleaved_vector_accesses():
    """
    A 2 x 2 NCHW tile of an NHWC buffer: the 4 elements inside the (contiguous) channel dim are one
    interleave group, so LLVM vectorises along the channels; 4 x 4 (16 > 8) stays a scalar walk, as
    does a walk with no contiguous dim.
    """
    nhwc = LayoutAttr([0, 2, 3, 1])
    assert cpu_model.interleaved_walk(nhwc, [1, 128, 2, 2], [1, 128, 2, 2], 4)
    assert cpu_model.interleaved_walk(nhwc, [1, 128, 8, 1], [1, 128, 8, 1], 1)
    assert not cpu_model.interleaved_walk(nhwc, [1, 64, 4, 4], [1, 64, 4, 4], 4)
    assert not cpu_model.interleaved_walk(nhwc, [1, 128, 4, 4], [1, 1, 2, 2], 4)  # one channel: no contiguous dim
    spec = load_device("xeon-spr-2c")
    source = "model p(x: f32[1, 128, 2, 2]) {\n  return global_avgpool(x)\n}\n"
    small, _ = _report(source, channels_last=True)
    larger, _ = _report(source.replace("2, 2]", "4, 4]"), channels_last=True)
    (small_pool,) = (k for k in small.kernels if k.kind == "pool")
    (larger_pool,) = (k for k in larger.kernels if k.kind == "pool")
    # The 4 x 4 pool pays for its strided walk, the 2 x 2 one only for its bytes and operations.
    assert larger_pool.extra["copy_s"] * spec["clock_hz"] > 4 * 128 * 4 * cpu_model.CYCLES_PER_RELAYOUT_ELEMENT
    assert small_pool.extra["copy_s"] * spec["clock_hz"] < 128 * 4 * cpu_model.CYCLES_PER_RELAYOUT_ELEMENT


def test_an_implicit_gemm_conv_is_the_micro_kernel_after_its_patch_gather():
    """
    The 3x3 conv of 16 channels into 32 at 16x16: the micro-kernel at the device's GEMM ceiling
    (block share and fill as a GEMM's), after a copy phase that gathers K x Y*X patch elements;
    its weight, relaid to (o, i, j, c) rows and copied by rows, walks nothing strided (channels-last
    pinned; `test_the_cpu_convolutions_are_channels_first` has the default).
    """
    from strata.backends.cost import hardware_kernels
    from strata.dialects import loop

    report, module = _report(CONV, channels_last=True)
    spec = load_device("xeon-spr-2c")
    (kernel,) = [k for k in hardware_kernels(module) if k.kind.data == "conv"]
    assert kernel.block() and cpu_model.patch_elements(kernel) == 16 * 9 * 16 * 16
    fill = 144 / (144 + cpu_model.fill_steps(cpu_model.OUTPUT_TILE_FILL_K, spec))
    assert cpu_model.micro_kernel_efficiency(kernel, spec) == pytest.approx(spec["gemm_efficiency"] * fill)
    loads = [op for op in kernel.walk() if isinstance(op, loop.LoadOp)]
    assert [loop.weight_rows(op, 16) for op in loads].count((2, 3, 1)) == 1
    (cost,) = [k for k in report.kernels if k.kind == "conv"]
    gather_s = cpu_model.CYCLES_PER_PATCH_ELEMENT * 16 * 9 * 256 / spec["clock_hz"]
    walked_s = cpu_model.strided_access_cycles(kernel, spec, cpu_model.body_ops(kernel)) / spec["clock_hz"]
    assert cost.extra["copy_s"] == pytest.approx(
        cpu_model.copy_bytes(kernel, cpu_model.body_ops(kernel)) / spec["l2_bandwidth_per_core"] + walked_s + gather_s)


def test_the_cpu_convolutions_are_channels_first():
    """
    strata's cpu code runs a convolution as `W[O, K] @ cols[K, pixels]`, whose rows are runs of one
    channel's pixels: `assign-layout` keeps the cpu's conv tensors NCHW (its weight OIHW), so the model
    needs no relayout, where channels-last relays the input, the output and the weight and walks its
    NHWC buffers strided; it is estimated, and measured, slower (`CHANNELS_LAST_TARGETS`).
    """
    first, module = _report(CONV)
    last, _ = _report(CONV, channels_last=True)
    assert not [k for k in [*first.kernels, *first.at_load] if k.kind == "relayout"]
    assert len([k for k in [*last.kernels, *last.at_load] if k.kind == "relayout"]) == 3
    assert first.total()["time_s"] < last.total()["time_s"]


def test_a_conv_of_several_images_is_one_implicit_gemm_and_costs_at_least_its_images_one_by_one():
    """
    Two images in the tile: one implicit GEMM over both images' pixels (N*Y*X columns), its
    product transposed back to [N, O, Y, X] (O x N*Y*X more copied elements), never cheaper than
    the same conv of one image (the property `cost-monotonic` found a batch of two priced
    below one when the batch took the scalar loops).
    """
    from strata.backends.cost import hardware_kernels

    def conv(batch: int):
        report, module = _report(CONV.replace("f32[1, 16", f"f32[{batch}, 16"))
        (kernel,) = [k for k in hardware_kernels(module) if k.kind.data == "conv"]
        (cost,) = [k for k in report.kernels if k.kind == "conv"]
        return kernel, cost

    one, one_cost = conv(1)
    two, two_cost = conv(2)
    assert two.block() == one.block()
    assert cpu_model.patch_elements(two) == (16 * 9 + 32) * 2 * 16 * 16
    assert two_cost.time_s > 1.9 * one_cost.time_s


def test_an_integer_conv_product_runs_as_llvm_vectorises_its_pixel_loop():
    """
    Off the micro-kernel (int8), the product's pixel loop: whole groups of 4 x 16 lanes at the
    vector rate, fewer pixels than a group scalar, at most 4 unrolled and vectorised along K; its
    weight, 288 int8 elements a row, copied by rows as the implicit GEMM's is.
    """
    from strata.backends.cost import hardware_kernels
    from strata.dialects import loop

    vector = cpu_model.CYCLES_PER_PRODUCT_VECTOR / 16
    assert cpu_model.product_cycles(4, 16) == pytest.approx(4 * vector)
    assert cpu_model.product_cycles(49, 16) == pytest.approx(49 * cpu_model.CYCLES_PER_PRODUCT_ELEMENT)
    assert cpu_model.product_cycles(100, 16) == pytest.approx(
        cpu_model.PRODUCT_LOOP_CYCLES + 96 * vector + 4 * cpu_model.CYCLES_PER_PRODUCT_ELEMENT)
    spec = load_device("xeon-spr-2c")
    assert cpu_model.product_share(64, spec) > cpu_model.product_share(49, spec)
    # The spec's loop rates (`--device host` solves them) replace the shipped ones, but for the
    # unrolled loops of at most 4 pixels, which are other code.
    solved = with_overrides(spec, ["cycles_per_product_vector=1.2", "cycles_per_product_element=1.3"])
    assert cpu_model.product_share(49, solved) == pytest.approx(
        cpu_model.product_share(49, spec) * cpu_model.CYCLES_PER_PRODUCT_ELEMENT / 1.3)
    assert cpu_model.product_share(256, solved) > cpu_model.product_share(256, spec)
    assert cpu_model.product_share(4, solved) == cpu_model.product_share(4, spec)
    report, module = _report("""model c(x: i8[1, 32, 16, 16]) {
  param w: i8[64, 32, 3, 3]
  return conv2d(x, w, padding=1, dtype=i32)
}
""", channels_last=True)
    (cost,) = [k for k in report.kernels if k.kind == "conv"]
    assert cost.extra["micro_kernel"] == "none"
    assert cost.extra["compute_s"] == pytest.approx(
        2 * 64 * 288 * 256 / (cpu_model.core_peak(spec) * cpu_model.product_share(256, spec)), rel=0.1)
    (kernel,) = [k for k in hardware_kernels(module) if k.kind.data == "conv"]
    loads = [op for op in kernel.walk() if isinstance(op, loop.LoadOp)]
    assert [loop.weight_rows(op, 16) for op in loads].count((2, 3, 1)) == 1


def test_a_tile_that_is_its_whole_buffer_is_read_in_place():
    """
    An elementwise kernel whose tiles are its whole buffers reads them in place (no copy phase,
    `loop.reads_in_place`) and computes its output in place (no store pass, `loop.stores_in_place`);
    from the L3 its output counts twice (write-allocate), from the L1 where it lies (`residence`:
    its 12 KiB are all a call touches) once.
    """
    from strata.backends.cost import hardware_kernels
    from strata.dialects import loop

    report, module = _report("model m(x: f32[16, 64]) {\n  param s: f32[16, 64]\n  return x * s\n}\n")
    spec = module_device(module)
    (kernel,) = hardware_kernels(module)
    loads = [op for op in kernel.walk() if isinstance(op, loop.LoadOp)]
    assert loads and all(loop.reads_in_place(op) for op in loads)
    assert cpu_model.copy_bytes(kernel, cpu_model.body_ops(kernel)) == 0
    stores = [op for op in kernel.walk() if isinstance(op, loop.StoreOp)]
    assert stores and all(loop.stores_in_place(op) for op in stores)
    _, streams = cpu_model.memory_bytes(kernel, spec, 0)
    assert streams == {"l3": 2 * 16 * 64 * 4 + 2 * 16 * 64 * 4}
    levels = cpu_model.residence(module, spec, frozenset())[kernel]
    assert set(levels.values()) == {"l1"}
    _, streams = cpu_model.memory_bytes(kernel, spec, 0, levels)
    assert streams == {"l1": 2 * 16 * 64 * 4 + 16 * 64 * 4}


def test_buffers_lie_where_their_reuse_distance_puts_them():
    """
    `residence`: a param or input was last touched a call ago, behind every byte the call touches
    (here 4 MiB of relu, beyond the Xeon's 2 MiB L2: in the L3, however small); the GEMM's output,
    touched just before the softmax reads it, is in the L1; the relu's 2 MiB buffers in the L3.
    Read from the L1 the softmax streams its bytes at the L1's rate, which a model without
    `residence` had put in the L3.
    """
    from strata.backends.cost import hardware_kernels

    source = ("model m(x: f32[16, 64], y: f32[512, 1024]) {\n  param w: f32[64, 64]\n"
              "  return relu(y), softmax(x @ w, axis=-1)\n}\n")
    report, module = _report(source)
    spec = module_device(module)
    relu, gemm, softmax = hardware_kernels(module)
    levels = cpu_model.residence(module, spec, frozenset())
    assert set(levels[relu].values()) == {"l3"}
    assert set(levels[gemm].values()) == {"l3"}  # x, w and its output, last touched a call ago
    assert levels[softmax][softmax.ins[0]] == "l1"
    _, streams = cpu_model.memory_bytes(softmax, spec, 0, levels[softmax])
    assert streams["l1"] == 16 * 64 * 4
    _, alone = cpu_model.memory_bytes(softmax, spec, 0)
    assert set(alone) == {"l3"}


def test_a_copy_kernel_pays_for_the_transpose_it_materialises():
    """
    A transpose alone is a copy kernel: its result is a pass of its own (read and written), and
    where it moves the innermost dim, an element-by-element walk; keeping the innermost dim, none.
    """
    from strata.backends.cost import hardware_kernels
    from strata.dialects.graph import ops as g

    rows = "model t(x: f32[64, 4, 64]) {\n  return transpose(x, perm=[1, 0, 2])\n}\n"
    cols = "model t(x: f32[64, 64]) {\n  return transpose(x, perm=[1, 0])\n}\n"
    for source, walked in ((rows, False), (cols, True)):
        _, module = _report(source)
        spec = module_device(module)
        (kernel,) = hardware_kernels(module)
        assert kernel.kind.data == "copy"
        (op,) = [o for o in kernel.walk() if isinstance(o, g.TransposeOp)]
        size = 4 * math.prod(op.result.type.get_shape())
        assert cpu_model.materialised_bytes(kernel, cpu_model.body_ops(kernel)) == 2 * size
        assert (cpu_model.transpose_walk_cycles(op, spec) > 0) == walked


def test_a_gemm_operand_is_packed_not_read_in_place():
    """
    A whole weight that the micro-kernel packs (`cpu.fma` at the hardware stage) is copied, not read
    in place; against one row (`loop.single_row_rhs`) it is read unpacked, where it lies.
    """
    from strata.backends.cost import hardware_kernels
    from strata.dialects import loop

    for rows, packed in ((2, True), (1, False)):
        _, module = _report(f"model m(x: f32[{rows}, 64]) {{\n  param w: f32[64, 100]\n  return x @ w\n}}\n")
        (kernel,) = [k for k in hardware_kernels(module) if k.kind.data == "gemm"]
        (weight,) = [op for op in kernel.walk()
                     if isinstance(op, loop.LoadOp) and tuple(op.source.type.get_shape()) == (64, 100)]
        assert loop.reads_in_place(weight) is not packed
        assert (kernel.packed_bytes.value.data > 0) is packed
        copied = cpu_model.copy_bytes(kernel, cpu_model.body_ops(kernel))
        assert (copied >= 2 * 64 * 100 * 4) is packed


def test_short_rows_are_priced_as_one_vector_per_row():
    """
    A norm, softmax or last-dim reduction over rows of 9 to 31 elements runs as one masked vector
    per row (`row_ops`): its operations cost `ROW_CYCLES_PER_LANE` per lane of `row_lanes`, not
    `cycles_per_flop` per element; rows of 32 and other axes stay loop nests.
    """
    from strata.dialects.graph import ops as g

    def kernel(source: str) -> tuple:
        report, module = _report(source)
        (k,) = (op for op in module.walk() if isinstance(op, cpu.KernelOp))
        return report.kernels[0], cpu_model.body_ops(k)

    def row_op_counts(ops) -> list[int]:
        return [cpu_model.row_ops(op) for op, _ in ops if type(op) in cpu_model.ROW_OPS]

    norm = "model m(x: f32[64, N]) {\n  param g: f32[N]\n  param b: f32[N]\n  return layernorm(x, g, b)\n}\n"
    short, short_ops = kernel(norm.replace("N", "16"))
    long, long_ops = kernel(norm.replace("N", "32"))
    assert row_op_counts(short_ops) == [7] and row_op_counts(long_ops) == [0]
    operations, cycles = cpu_model.row_work(short_ops)
    assert operations == 7 * 64 * 16
    assert cycles == pytest.approx(7 * 64 * 16 * cpu_model.ROW_CYCLES_PER_LANE)
    # Per element, the short rows cost a small multiple of the nest's long ones, which vectorise
    # along the row (measured 64 x 16: 0.56 us, 64 x 32: 0.75 us; a nest of rows of 16, which LLVM
    # vectorises across the rows with gathers, took 2.9 us).
    assert long.time_s / 32 < short.time_s / 16 < 3 * long.time_s / 32
    # Rows of 10 fill a vector of 16: the padded lanes are paid for.
    assert cpu_model.row_work(kernel(norm.replace("N", "10"))[1])[1] == pytest.approx(cycles)

    _, softmax_ops = kernel("model m(x: f32[64, 10]) {\n  return softmax(x, axis=-1)\n}\n")
    assert row_op_counts(softmax_ops) == [4]  # its exponential is a flat loop
    _, columns = kernel("model m(x: f32[10, 64]) {\n  return sum(x, axis=0)\n}\n")
    assert not [op for op, _ in columns if cpu_model.row_ops(op)]
    _, half = kernel("model m(x: bf16[64, 10]) {\n  return sum(x, axis=-1)\n}\n")
    assert [type(op) for op, _ in half if type(op) is g.SumOp] and not cpu_model.row_work(half)[0]


def test_an_embedding_lookup_by_vectors_costs_its_row_copies():
    """
    A gather of whole f32 vectors of rows (`cpu.gathers_by_vectors`) costs its copy phase, where one
    the export runs element by element (a bf16 table) pays `CYCLES_PER_GATHERED_ELEMENT` on each.
    """
    source = "model m(ids: i32[1, 64]) {{\n  param t: {dtype}[2048, 256]\n  return gather(t, ids)\n}}\n"
    (vectors, module), (scalar, _) = (_report(source.format(dtype=d)) for d in ("f32", "bf16"))
    [gather] = [op for op in module.walk() if isinstance(op, cpu.KernelOp)]
    [lookup] = [op for op in gather.walk() if op.name == "loop.gather"]
    assert cpu.gathers_by_vectors(lookup)
    elements = 64 * 256
    spec = module_device(module)
    per_element = cpu_model.CYCLES_PER_GATHERED_ELEMENT * elements / spec["clock_hz"]
    assert vectors.kernels[0].time_s < per_element / 3
    assert scalar.kernels[0].time_s > per_element


def test_a_dequantize_to_bf16_costs_its_rounding():
    """
    A dequantize to bf16 costs `DEQUANTIZE_TO_BF16_OPS` operations an element (its rounding in
    integer operations), more than the same dequantize to f32, which moves more bytes; in a bf16 GEMM the
    cast that widens it back to f32 runs in its loop (`cpu.widened_dequantize`), no pass of its own.
    """
    source = "model m(w: i8[64, 1024], s: f32[1024]) {{\n  return dequantize(w, s, dtype={dtype})\n}}\n"
    (half, module), (single, _) = (_report(source.format(dtype=d)) for d in ("bf16", "f32"))
    spec = module_device(module)
    per_op = spec.get("cycles_per_map_op", cpu_model.CYCLES_PER_MAP_OP)
    conversions = cpu_model.DEQUANTIZE_TO_BF16_OPS * 64 * 1024 * per_op / spec["clock_hz"]
    assert half.kernels[0].time_s >= conversions
    assert half.kernels[0].time_s > single.kernels[0].time_s
    gemm = "model m(h: bf16[1, 1, 256]) {\n  param w: i8[256, 512]\n  param s: f32[512]\n  return h @ dequantize(w, s, dtype=bf16)\n}\n"
    _, module = _report(gemm)
    [deq] = [op for op in module.walk() if op.name == "graph.dequantize"]
    cast = cpu.widened_dequantize(deq)
    assert cast is not None and cast.name == "graph.cast"
    ops = cpu_model.body_ops(next(op for op in module.walk() if isinstance(op, cpu.KernelOp)))
    with_cast = cpu_model.map_work(ops, spec)[1]
    without = cpu_model.map_work([(op, t) for op, t in ops if op is not cast], spec)[1]
    assert with_cast == without


def test_int4_weights_take_a_byte_each_as_native_code_stores_them():
    """The cpu model streams an `i4` buffer at a byte an element (`cpu.storage_bytes`), as export-mlir
    holds it, where `type_bytes` (every other target) packs two to a byte."""
    from strata.dialects.vocabulary import type_bytes

    source = "model m(h: f32[1, 1, 512]) {{\n  param w: {dtype}[512, 1024]\n  param s: f32[1024]\n  return h @ dequantize(w, s, dtype=f32)\n}}\n"
    (i4, module), (i8, _) = (_report(source.format(dtype=d)) for d in ("i4", "i8"))
    kernel = next(op for op in module.walk() if isinstance(op, cpu.KernelOp))
    [weight] = [v for v in kernel.ins if v.type.get_shape() == (512, 1024)]
    assert cpu.storage_bytes(weight.type) == 512 * 1024 == 2 * type_bytes(weight.type)
    assert i4.kernels[0].bytes == i8.kernels[0].bytes


def test_a_copy_phase_reads_a_buffer_in_dram_at_its_bandwidth():
    """
    `outer_copy_seconds`: a two-row GEMM's weight tiles are copied before the micro-kernel reads
    them, and the core waits for those reads: from DRAM (its weight a call old behind more than the
    L3) they come at DRAM's bandwidth, from the L2 at no extra cost; the difference is the weight's
    bytes at the two rates. A GEMV's weight, read where it lies tile after tile, costs its whole
    price at DRAM's bandwidth (no copy through the L2).
    """
    from strata.backends.cost import hardware_kernels

    nbytes = 1024 * 1024 * 4
    for rows, beyond_l2 in ((2, True), (1, False)):
        report, module = _report(f"model m(h: f32[{rows}, 1024]) {{\n  param w: f32[1024, 1024]\n  return h @ w\n}}\n")
        spec = module_device(module)
        (kernel,) = hardware_kernels(module)
        ops = cpu_model.body_ops(kernel)
        weight = kernel.ins[[v.type.get_shape() for v in kernel.ins].index((1024, 1024))]
        near = {v: "l2" for v in (*kernel.ins, *kernel.outs)}
        far = {**near, weight: "dram"}
        in_l2 = cpu_model.outer_copy_seconds(kernel, spec, ops, near, 1)
        in_dram = cpu_model.outer_copy_seconds(kernel, spec, ops, far, 1)
        assert in_l2 == 0
        copied_at_l2 = nbytes / spec["l2_bandwidth_per_core"] if beyond_l2 else 0.0
        assert in_dram == pytest.approx(nbytes / spec["dram_bandwidth_per_core"] - copied_at_l2)
        cheap = cpu_model.kernel_cost(kernel, spec, near)
        dear = cpu_model.kernel_cost(kernel, spec, far)
        total = lambda cost: cost.extra["compute_s"] + cost.extra["copy_s"]  # noqa: E731
        assert total(dear) == pytest.approx(total(cheap) + in_dram)


def test_a_kernel_of_several_passes_adds_its_streams_to_them():
    """
    `streams_add`: a rotary embedding (slices, products, a concatenation: passes one after another)
    waits on its tables and output where they lie in the L3, on top of its passes; a one-op
    elementwise kernel overlaps its stream with its loop.
    """
    from strata.backends.cost import hardware_kernels

    rope = """model r(x: f32[1, 4, 64, 64], c: f32[64, 64], s: f32[64, 64]) {
  return x * c + concat([-slice(x, axis=-1, start=32, end=64), slice(x, axis=-1, start=0, end=32)], axis=-1) * s
}
"""
    _, module = _report(rope)
    (kernel,) = hardware_kernels(module)
    assert kernel.kind.data == "copy" and cpu_model.streams_add(kernel, 0)
    spec = module_device(module)
    cost = cpu_model.kernel_cost(kernel, spec, {v: "l3" for v in (*kernel.ins, *kernel.outs)})
    streamed = sum(n / cpu_model._bandwidth(spec, level, 1) for level, n in cost.bytes.items() if level != "l2")
    assert cost.time_s == pytest.approx(cost.extra["compute_s"] + cost.extra["copy_s"] + streamed
                                        + cpu_model.CALL_LATENCY_S, rel=1e-6)
    _, module = _report(ELEMENTWISE.format(n=64, fn="relu"))
    (kernel,) = hardware_kernels(module)
    assert not cpu_model.streams_add(kernel, 0)


def test_an_output_outside_the_private_caches_costs_the_specs_store_cost():
    """
    An output in the L3 or DRAM moves twice its bytes (write-allocate) unless the spec gives the
    level's `*_store_cost` (`--device host` probes it: read over store bandwidth).
    """
    from strata.backends.cost import hardware_kernels

    _, module = _report(ELEMENTWISE.format(n=64, fn="relu"))
    (kernel,) = hardware_kernels(module)
    spec = module_device(module)
    nbytes = 64 * 1024 * 4
    for level in ("l3", "dram"):
        levels = {v: level for v in (*kernel.ins, *kernel.outs)}
        assert cpu_model.kernel_cost(kernel, spec, levels).bytes[level] == 3 * nbytes
        cheaper = with_overrides(spec, [f"{level}_store_cost=1.25"])
        assert cpu_model.kernel_cost(kernel, cheaper, levels).bytes[level] == nbytes + 1.25 * nbytes


def test_each_input_in_dram_waits_the_specs_latency_before_it_streams():
    """
    `cold_read_seconds`: an RMS norm of one row waits `dram_latency_s` once for each input that lies
    in DRAM (its row and its weight: twice), and nothing for an output there (its stores retire into
    the store queue) nor for an input in the L3; a spec without the key waits nothing.
    """
    from strata.backends.cost import hardware_kernels

    _, module = _report("model m(x: f32[1, 1024]) {\n  param g: f32[1024]\n  return rmsnorm(x, g)\n}\n")
    (kernel,) = hardware_kernels(module)
    spec = with_overrides(module_device(module), ["dram_latency_s=5e-7"])
    near = {v: "l3" for v in (*kernel.ins, *kernel.outs)}
    cases = (({**near, **{v: "dram" for v in kernel.ins}}, 2), ({**near, kernel.outs[0]: "dram"}, 0), (near, 0))
    for levels, inputs in cases:
        assert cpu_model.cold_read_seconds(kernel, spec, levels) == pytest.approx(inputs * 5e-7)
        assert (cpu_model.kernel_cost(kernel, spec, levels).time_s
                - cpu_model.kernel_cost(kernel, module_device(module), levels).time_s) == pytest.approx(inputs * 5e-7)
    assert "dram_latency_s" not in module_device(module)


def test_a_weight_widened_as_the_micro_kernel_reads_it_writes_no_f32_tile():
    """
    `cpu.widened_as_read`: a bf16 weight's cast to f32 costs nothing (the micro-kernel widens its
    rows), and an int4 weight's dequantize to bf16 costs its operations (those of the loop a tile
    of finite scales takes, `FINITE_SCALES_OPS_SHARE`) and its tile's read, no write; neither f32
    tile counts against the L1.
    """
    from strata.backends.cost import hardware_kernels

    for source in ("model m(h: bf16[1, 1, 256]) {\n  param w: bf16[256, 512]\n  return h @ w\n}\n",
                   "model m(h: bf16[1, 1, 256]) {\n  param w: i4[256, 512]\n  param s: f32[512]\n"
                   "  return h @ dequantize(w, s, dtype=bf16)\n}\n"):
        _, module = _report(source)
        spec = module_device(module)
        (kernel,) = hardware_kernels(module)
        ops = cpu_model.body_ops(kernel)
        casts = [op for op, _ in ops if op.name == "graph.cast" and cpu.widened_as_read(op)]
        assert len(casts) == 1
        without = [(op, t) for op, t in ops if op is not casts[0]]
        assert cpu_model.map_work(ops, spec) == cpu_model.map_work(without, spec)
        deqs = [(op, t) for op, t in ops if op.name == "graph.dequantize"]
        for op, times in deqs:
            per_op = spec.get("cycles_per_map_op", cpu_model.CYCLES_PER_MAP_OP)
            operations = cpu_model.DEQUANTIZE_TO_BF16_OPS * cpu_model.FINITE_SCALES_OPS_SHARE * 256 * 512 * per_op
            assert cpu_model.map_work(deqs, spec)[1] == pytest.approx(operations)
        assert all(cpu_model._in_registers(op) for op, _ in (*deqs, (casts[0], 1)))


def test_bf16_elementwise_ops_cost_their_conversions():
    """
    An elementwise op with a bf16 result computes in f32 and rounds (`BF16_RESULT_OPS` operations an
    element), a cast to bf16 only rounds (`BF16_ROUNDING_OPS`), a cast from bf16 moves its bytes:
    the bf16 multiply costs more than the f32 one of the same shape, whose bytes are twice as many.
    """
    source = "model m(w: {t}[64, 1024], v: {t}[64, 1024]) {{\n  return w * v\n}}\n"
    (half, module), (single, _) = (_report(source.format(t=t)) for t in ("bf16", "f32"))
    spec = module_device(module)
    per_op = spec.get("cycles_per_map_op", cpu_model.CYCLES_PER_MAP_OP)
    assert half.kernels[0].time_s >= cpu_model.BF16_RESULT_OPS * 64 * 1024 * per_op / spec["clock_hz"]
    assert half.kernels[0].time_s > single.kernels[0].time_s
    rounding, _ = _report("model m(w: f32[64, 1024]) {\n  return cast(w, dtype=bf16)\n}\n")
    widening, _ = _report("model m(w: bf16[64, 1024]) {\n  return cast(w, dtype=f32)\n}\n")
    assert rounding.kernels[0].time_s >= cpu_model.BF16_ROUNDING_OPS * 64 * 1024 * per_op / spec["clock_hz"]
    assert widening.kernels[0].time_s < rounding.kernels[0].time_s
