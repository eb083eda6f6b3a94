"""
CPU cost model (the host's and other multi-core CPUs'), per `cpu.kernel`, from its tiling.

A `cpu.kernel` says what strata's native code does with the kernel
(`passes/lower_to_hardware.py`, `lower_cpu`): `parallel_tiles` iterations
of its parallel tile loop shared by `threads` threads, a GEMM's tile
product as `micro_kernel` = [mr, nr] register blocks with `b` packed once
per tile (`packed_bytes`), one tile's working set (`l2_bytes`) in a core's
L2. For each kernel:

- cores: `used = min(threads, cores)`; the busiest core runs
  `ceil(parallel_tiles / used)` of the tiles, so the kernel runs
  `parallel_tiles / ceil(parallel_tiles / used)` times faster than on one
  core (a 1-tile kernel gains nothing from a second thread);
- compute, matrix work (`matrix_flops`, edge tiles already padded in the
  IR): with a micro-kernel, at one core's FMA peak (`simd_lanes_f32` x
  `fma_pipes` x 2 x `clock_hz`) times `gemm_efficiency` (the micro-kernel
  loop's ceiling: broadcasts, loads and loop overhead between the FMAs,
  calibrated on this host), times the register blocks' useful share (a
  tile's rows padded to `mr`, its columns to `nr`: the last strip is
  masked, not skipped), times `K / (K + 2 K/k + OUTPUT_TILE_FILL_K)`: each
  block loads and stores its accumulators once per k tile
  (`MICRO_KERNEL_FILL_STEPS` = 2 steps), each output tile is zeroed and
  stored once (80 steps, measured), both on the Xeon's two FMA pipes and
  in proportion to `fma_pipes` elsewhere (`fill_steps`: loads and stores
  take the same clocks, a k step twice as many on one pipe). Without the packed micro-kernel (a
  batched GEMM, attention, an operand computed in the kernel, so unpacked)
  at `LOOP_MATRIX_EFFICIENCY` of the Xeon's peak (in flops a clock:
  `loop_share`) times the lanes the tile's
  columns fill; a convolution the export runs as an implicit GEMM (f32,
  ungrouped) through the same micro-kernel, at its ceiling
  times its block's useful share and output-tile fill (`conv_efficiency`),
  after a copy phase gathering its patches (`CYCLES_PER_PATCH_ELEMENT`,
  `patch_elements`); another ungrouped one (integer, low precision) as
  the same product in LLVM's vector loops (`product_cycles`), after the
  same gather; a grouped one at `CONV_EFFICIENCY`;
- compute, passes over tiles (`map_work`): each elementwise op (and a
  reduction of at most 8 innermost elements, `interleaved_reduction`) one
  loop over its tile, its bytes at `map_byte_cycles` (the L1's rate where
  the kernel's tiles fit it), a quantize's arithmetic at `CYCLES_PER_MAP_OP`
  where that is longer; a store not done in place (`loop.stores_in_place`)
  a pass of its tile;
- compute, other work (epilogues, norms, softmax, reductions: `flops -
  matrix_flops` beyond the passes): scalar loops, `CYCLES_PER_FLOP` clocks per FLOP, plus
  `CYCLES_PER_TRANSCENDENTAL` per exp-like element (`transcendentals`;
  `TRANSCENDENTAL_CYCLES` for gelu, erf and the libm calls) and
  `CYCLES_PER_GATHERED_ELEMENT` per element a gather reads element by element (one
  that copies whole vectors of rows, `cpu.gathers_by_vectors`, an embedding lookup,
  is its copy phase alone);
- memory: the bytes each level moves (as native code stores them, `cpu.storage_bytes`:
  an `i4` in a byte), each at the bandwidth of the cores
  used (per-core figures times cores, capped at the chip's): through L2,
  the tiles loaded (`read_bytes`, copied into tile buffers: read and
  written; a tile that is its whole buffer as laid out, or a contiguous
  slab of it, is read in place, `loop.reads_in_place`), a copy kernel's
  transposes and concatenations
  (their results materialised, read and written, and a transpose that
  moves the innermost dim walked at `strided_cycles`' rate), `a`'s rows re-read once per packed strip of `nr` columns
  (`2 / nr` bytes per FLOP of f32), `b`'s strip re-read by every block
  (`2 / mr` bytes per FLOP) when it overflows half the L1d, and the packing
  of `b` (read and written once per tile); streamed from the level each
  buffer lies in when the kernel starts (`residence`: the L1d, L2, L3 or
  DRAM its reuse distance in a loop of calls fits; a param was last
  touched a call ago), the unique inputs once, the outputs once from the
  private caches and twice from the L3 or DRAM (write-allocate: a line is
  read before it is written, and written back; or the spec's
  `l3_store_cost` and `dram_store_cost` times, which the host probes), and the tile re-reads
  (a's row panel per column tile, b's per row tile: `read_bytes` beyond
  the unique inputs) where the largest input lies;
- time = max(compute + copies, other L2 traffic, the streams) + the call,
  `dram_latency_s` for each input that lies in DRAM (`cold_read_seconds`)
  and, with more than one thread, one OpenMP fork and join
  (`parallel_region_latency_s`): the tile copies and the packing are
  phases of their own between micro-kernel calls, their first reads of a
  buffer in the L3 or DRAM at that level's bandwidth (`outer_copy_seconds`:
  the core stalls on them, as on a slab or a product's `b` read in place),
  while the out-of-order core and the
  prefetchers overlap the other loads with the FMAs. A `b` that the
  micro-kernel widens as it reads it (`cpu.widened_as_read`: a bf16 tile,
  or an int4/int8 one dequantized to bf16) writes no f32 tile: the cast is
  free and the dequantize costs its operations alone, those of the loop
  without NaN tests that a weight of finite scales takes
  (`FINITE_SCALES_OPS_SHARE`).

Work at load: what depends on the params alone (`loop.load_plan`: params
relaid into their kernels' layouts, kernels over params only, such as an
int8 model's per-channel scale products) the native code runs once, when
the params are bound (`@<model>_load`, `passes/export_mlir.py`), as ONNX
Runtime folds initializers; it is costed as every other kernel and
reported apart (`Report.at_load`), not in a call's time.

Copies between kernels: the native code runs every other `loop.copy` of
the model function on every call (an input relaid into its kernel's
layout, an activation transposed), each named `relayout_I` by its place
among all of them (`model_copies`). A copy between equal layouts is `memref.copy` (a
`memcpy`: read and written at the L3's bandwidth, or DRAM's beyond it, after
`dram_latency_s`: a param was last touched a call ago), and so is a relayout that keeps the
elements' order (it moves only dims of size 1: ResNet-18's 1x1 weights,
f32 and i8 alike, measured 0.18 clocks per byte, the L3's rate); another
relayout is the export's scalar loop nest, one load and one store per
element, priced by its access pattern (`strided_cycles`), or its bytes
at the outer level's bandwidth when that is slower.

Access patterns: an element-by-element walk (a relayout, a tile loaded or
stored through a permuted layout, such as a pool's NCHW tile of an NHWC
buffer) costs nothing beyond its loop's operations where the innermost
walked dim is contiguous, `CYCLES_PER_RELAYOUT_ELEMENT` per element where
consecutive elements share a cache line or the lines come back from the
L1d, and `CYCLES_PER_MISSED_ELEMENT` where each element is its own line
and the walk's lines overflow the L1d before it returns to them. A
kernel's strided tile loads and stores are a copy phase of their own,
but for a walk whose dims inside one contiguous in the buffer hold at most
8 elements (a 2 x 2 NCHW tile of an NHWC buffer): LLVM unrolls them and
vectorises along the contiguous dim as interleaved accesses
(`MAX_INTERLEAVE_FACTOR`).

Norms and quantizes count the element operations the export emits
(`OPS_PER_ELEMENT`: a layer norm's mean, centring, squares, variance and
scaling; an RMS norm's squares, sum and scaling), not the shared FLOP
convention's 8 (1 for a quantize), so an RMS norm costs about 4/7 of a
layer norm of its shape.

The constants are properties of strata's generated code, not of the chip:
each was measured with `strata measure` on this host (1 thread) and says
where. Transfers and collectives between CPUs (sockets, hosts) run over
`link_bandwidth` when the spec has it; otherwise such a program is an
error.

Threads are a choice of the run, not of the chip: `strata compile --target
cpu --threads N` (or `--schedule threads=N`) lowers with N, default 1 as
`strata run --backend mlir`; the report prices what that run does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import scf
from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type, ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue

from strata.backends.cost import (
    Interconnect, KernelCost, Report, chips, collective_costs, hardware_kernels, link_transfer_cost, model_function,
    transfers,
)
from strata.dialects import loop
from strata.dialects.device import DeviceSpec, SpecError
from strata.dialects.graph import ops as g
from strata.dialects.graph.flops import TRANSCENDENTAL_OPS, op_flops
from strata.dialects.graph.layout import LayoutAttr, layout_of, same_element_order
from strata.dialects.graph.shapes import num_elements
from strata.dialects.hardware import cpu
from strata.dialects.hardware._kernel import MatrixOp
from strata.dialects.hardware.cpu import core_peak, row_lanes, storage_bytes
from strata.dialects.loop import iterations


MICRO_KERNEL_FILL_STEPS = 2
"""k steps a register block spends loading and storing its mr x nr/lanes accumulators once per k tile
on a core of `FILL_PIPES` FMA pipes (one store per clock against `fma_pipes` FMAs per clock: about
`fma_pipes` steps; `fill_steps` scales it)."""

FILL_PIPES = 2
"""`fma_pipes` of the core the fill steps (`MICRO_KERNEL_FILL_STEPS`, `OUTPUT_TILE_FILL_K`) were
measured on (the Xeon guest, `xeon-spr-2c`)."""

OUTPUT_TILE_FILL_K = 80
"""An output tile's fixed cost in steps of the whole reduction K: zeroing its f32 accumulator tile,
the first touches of each k tile's operands, storing the tile. Efficiency `K / (K + 80)`; measured
(`strata measure` on this host, 1 thread): GPT-2's K = 256 GEMMs run at 0.56 of the peak (0.76 of
the 1024^3 GEMM's, K = 1024), 256 / (256 + 80) against 1024 / (1024 + 80)."""

LOOP_MATRIX_EFFICIENCY = 0.125
"""Share of the FMA peak matrix work runs at without the packed micro-kernel (LLVM's loop nests from
`--convert-linalg-to-loops`, or the micro-kernel reading an unpacked, computed `b`/`a`): measured on
the Xeon guest with `strata measure` (GPT-2 S=64 D=256, 2026-12-05): the attention kernels' products
at 0.12 of the peak, the output projection (its `a` a transposed, reshaped tile) at 0.13. These
loops do not issue full-width FMAs back to back (loads, index arithmetic and reductions between
them), so their rate is a number of flops a clock, not a share of the FMA peak: `loop_share`
converts it to a core of other FMA pipes (0.125 of the Xeon's 64 flops a clock is 8; on Zen 4,
32 flops a clock, the same loops run at 0.25 of its peak)."""

LOOP_PEAK_FLOPS_PER_CLOCK = 64
"""The FMA peak per clock (`simd_lanes_f32` x `fma_pipes` x 2) of the core `LOOP_MATRIX_EFFICIENCY`
was measured on (the Xeon guest, `xeon-spr-2c`). On the Zen 4 guest (32 a clock) attention's kernels
took 0.84 to 0.93 of the time the same flops a clock predict (GPT-2 and Llama, S=64 D=256; ViT 0.67;
`strata measure`, 1 thread, 2026-12-06), where the same share of its peak predicted 1.6 times the
measured time; the integer convolutions' scalar loops (`CONV_EFFICIENCY`) ran at about the same
share of the halved peak (0.67 to 1.5 of that estimate; 0.34 to 0.77 of a flops-a-clock one), so
that one stays a share."""

UNPACKED_GEMM_EFFICIENCY = 0.58
"""The micro-kernel's ceiling when `b` is not packed because `a` is computed in the kernel (an
attention output projection's transposed, reshaped tile), as a share of the Xeon's peak
(`LOOP_PEAK_FLOPS_PER_CLOCK`): its strided `b` rows, not the FMAs, set the rate, so elsewhere it
is the same flops a clock (`loop_share`), and never over the spec's `gemm_efficiency`. Measured on
the Xeon guest (`strata measure`, 1 thread, 2026-12-06) after padding and fill: GPT-2's two
output projections (S=64 D=256) 0.45 and 0.46, LLaMA's 0.63 and 0.63, ViT's 0.58 and 0.58; the
median of the six, all in-sample. On the Zen 4 guest (one 16-lane FMA a clock, 32 flops) the
same kernels ran at its `gemm_efficiency` within 15% (GPT-2, LLaMA and ViT, 2026-12-06), where
0.58 of its peak gave 1.4 to 1.6 times their measured times. The spec's `unpacked_gemm_efficiency`
replaces it (`--device host` solves it on a GEMM of heads transposed and reshaped, timed there: on
the Granite Rapids guest these kernels took 0.6 of the time 0.58 of the Xeon's peak predicts)."""

CYCLES_PER_PATCH_ELEMENT = 0.78
"""Core clocks per element the implicit-GEMM convolution's im2col gathers into its patch matrix
(`patch_elements`: K x the output tile's Y*X, per tile), packed by column strips: the export's
`linalg.generic` copy, whose inner loop runs along an output row (a strided read where the
stride is over 1) or over a strip's few rows. Fitted with `strata measure` of one-conv models
(1 thread, median of 40, 2026-12-06, the Zen 4 guest), the products at the host's
`gemm_efficiency` times the block's share and fill, the tile copies at the L2's bandwidth as for
every kernel: 23 convolutions, 1 to 192 output channels, K = 16 to 1152, outputs 2x2 to 32x32,
strides 1, 2 and 8 (none of them a sample's kernel), 21 within 25% of the measured time."""

CONV_EFFICIENCY = 0.03
"""Share of the FMA peak a grouped convolution runs its products at (the export's
`linalg.generic` over the window, scalar loops; its output tile's fill is small beside them,
`conv_efficiency`). Measured (`strata measure`, 1 thread, on the Xeon guest when every conv took
this path): ResNet-18's 3x3 convs at HW=64 at 0.023 of the peak, ViT's 8x8 patch embedding at
0.039."""

CYCLES_PER_PRODUCT_VECTOR = 2.4
"""Core clocks per vector of multiply-adds in the product of an ungrouped convolution the
micro-kernel does not take (integer, low precision: `_linalg._im2col_product`, `W[O, K] @
cols[K, P]`, its innermost loop over the tile's P = N*Y*X pixels), as LLVM's loop vectoriser
shapes that loop (`product_cycles`): per weight element, whole groups of `PRODUCT_INTERLEAVE`
vectors of `simd_lanes_f32`, then single vectors (its vectorised epilogue), each a load and
sign-extension of `cols`, a multiply by the broadcast weight and an add into the accumulator
row, plus `PRODUCT_LOOP_CYCLES` to enter the vector loop; then a scalar remainder at
`CYCLES_PER_PRODUCT_ELEMENT` a pixel. A loop of fewer pixels than one group runs scalar (its
epilogue is reached only through the main loop); one of at most `UNROLLED_PIXELS` LLVM unrolls
whole and vectorises along K instead, every multiply-add at the vector rate. All fitted on
`strata measure` of 11 one-conv int8 models (1 thread, median of 40, 2026-12-06, the Zen 4
guest, i32 accumulation): 1x1 convs of 256 to 64 channels at outputs 1x1 to 16x16 (P = 1 to
256), none a sample's kernel: p=64 19.1 and p=256 48.3 clocks per weight element, p=9 to 49
0.55 to 0.81 a pixel, p=1 and p=4 0.16 and 0.19 a pixel."""

PRODUCT_LOOP_CYCLES = 9.4
"""Core clocks per weight element to enter the convolution product's vector loop (`CYCLES_PER_PRODUCT_VECTOR`)."""

CYCLES_PER_PRODUCT_ELEMENT = 0.65
"""Core clocks per multiply-add of the convolution product's scalar loop (`CYCLES_PER_PRODUCT_VECTOR`)."""

PRODUCT_INTERLEAVE = 4
"""Vectors LLVM's loop vectoriser interleaves per iteration of the product's pixel loop (its
choice on x86 with AVX-512 for this loop: 4 x 16 lanes, so a tile of 36 or 49 pixels runs scalar)."""

UNROLLED_PIXELS = 4
"""The most pixels a convolution product's loop has that LLVM unrolls whole (`CYCLES_PER_PRODUCT_VECTOR`)."""

CYCLES_PER_FLOP = 0.072
"""Core clocks per FLOP of the work outside matrix products (epilogues, norms, softmax, reductions),
unless the spec gives `cycles_per_flop` (`--device host` solves it on a layer norm timed there):
the export's `linalg.generic` tile ops, vectorised loops over the tile (a sum's adds reassociate,
`Emitter.reduce_of`; a norm reduces its squares as it makes them and writes no tile but its
result, `passes/_linalg.py`, `layernorm`). Calibrated on kernels measured alone (`strata measure`
of one-op models, 1 thread, the fastest of 3 processes' means of 100, the Zen 4 guest,
2026-12-08): f32 layer norm 64 x 256 (7 operations per element, `OPS_PER_ELEMENT`) 4.3 us, 65 x
192 3.3 us, 64 x 1024 17.6 us, 32 x 4097 41.8 us (estimated on that host's spec, `cycles_per_flop`
0.065, 4.9, 3.9, 18.0, 46.4); RMS norm 64 x 1024 15.0 us (14.2); softmax 64 x 1024 58.4 us (43.1),
32 x 4097 106.9 us (95.8); a row sum of 64 x 1024 2.4 us (2.3). The same layer norm of 64 x 1024 took 125.5 us while each sum was a
dependent chain of adds (0.75 clocks per FLOP), 26.6 us with its centred values and squares
written as tiles. bf16 rows: `ROW_FUNCTION_OPS`; a max or min: `CYCLES_PER_MAX_ELEMENT`;
elementwise ops: `map_work`."""


def map_byte_cycles(spec: DeviceSpec) -> float:
    """
    Core clocks per byte of a pass over tiles (`map_work`): an elementwise op's loop reads its
    operands' tiles and writes its result's, a `loop.store` not done in place copies its tile into
    the buffer (read and written). The spec's `cycles_per_map_byte` (`--device host` solves it on a
    relu timed there, computed in place: 8 bytes an element and next to no arithmetic), else the
    L2's rate, the level such passes stream through (`clock_hz / l2_bandwidth_per_core`: 0.031 on
    the Zen 4 guest, where the relu solved 0.034). Measured (`strata measure` of one-op models,
    1 thread, the fastest of 3 processes' means of 50, the Zen 4 guest, 2026-12-07), against
    estimates at 0.034: relu 64 x 1024 4.7 us (4.9), an add 64 x 1024 tiled in two (its tile loads
    copied) 23.4 us (21.1), dequantize i8 1 x 64 x 32 x 32 (5 bytes an element) 2.8 us (3.9), the
    global average pool of [1, 128, 2, 2] (`interleaved_reduction`) 0.05 us (0.05); pricing each
    operation as a relu's had given an add 0.65, a dequantize 0.43 clocks an element and the pool
    2.5 times its time: an op count is no measure of a pass that waits on its bytes. A kernel whose
    tiles fit the L1d (`l1_resident`) runs its passes at the L1's rate (the price times
    `l2_bandwidth_per_core / l1_bandwidth_per_core`): relu 8 x 256 (16 KiB of tiles) 0.11 us
    (0.14; 0.23 at the L2's rate).
    """
    return spec.get("cycles_per_map_byte", spec["clock_hz"] / spec["l2_bandwidth_per_core"])


CYCLES_PER_MAP_OP = 0.29
"""Core clocks per element operation of a quantize (`OPS_PER_ELEMENT`: it divides, rounds to even,
adds the zero point, saturates and converts), the one elementwise op whose arithmetic outlasts its
bytes (`map_work`), unless the spec gives `cycles_per_map_op` (`--device host` solves it on a
quantize timed there). On the Xeon guest a quantize f32 -> i8 64 x 1024 took 1.45 clocks per
element: 0.29 per operation; on the Zen 4 guest 19.5 us (2026-12-07), 0.22. Other elementwise ops
wait on their bytes: a dequantize (a conversion and a multiply) of 4096 i8 elements in ResNet-18
int8 0.17 us, 0.15 clocks an element, where 0.22 an operation had priced it at 0.24 us."""

MAP_OPS = (g.BinaryElementwiseOp, g.UnaryElementwiseOp, g.CastOp, g.QuantizeOp, g.DequantizeOp)
"""The elementwise ops priced as passes over their tiles (`map_work`)."""

CYCLES_PER_TRANSCENDENTAL = 1.3
"""Core clocks per exp-like element beyond its FLOPs (`exp`, `sigmoid`, `silu`, softmax's and
attention's exponentials: the export's polynomial, `Emitter.exp`). Measured alone as above, 64 x
1024 (65k elements), beside relu's 4.7 us: exp 25.2 us, sigmoid 30.1 us, silu 32.0 us (1.1 to 1.5
clocks more per element); softmax 64 x 256 24.4 us (the Zen 4 guest, 2026-12-07). Other functions:
`TRANSCENDENTAL_CYCLES`."""

TRANSCENDENTAL_CYCLES = {g.GeluOp: 4.2, g.ErfOp: 3.8, g.LogOp: 22.0, g.TanhOp: 52.0, g.PowOp: 44.0}
"""Core clocks per element of the functions dearer than an exponential, measured alone as above
(64 x 1024, beside relu's): `gelu` 80 us and `erf` 72 us (the export's polynomial and one
exponential; the Zen 4 guest, 2026-12-07); `log` 402 us, `tanh` 921 us, `pow` 783 us: libm calls
per element (`--convert-math-to-libm`), not vectorised (the Xeon guest)."""

CYCLES_PER_GATHERED_ELEMENT = 3.5
"""Core clocks per element a gather reads element by element (not `cpu.gathers_by_vectors`: an id
load, the row's index arithmetic, a scalar copy), its table hot: the kernel alone. Measured
(`strata measure`, 1 thread): on the Zen 4 guest (2026-12-07) a bf16 table's 64 rows of 1024
(`gather(embed: bf16[4096, 1024], tokens: i32[1, 64])`) 61.3 us, 3.4 clocks an element; on the
Xeon guest LLaMA's f32 token embedding (S=64 D=256 V=2048), when it still ran so, 14.9 us alone,
3.5 clocks, and 24 to 28 us in the model: its table and ids read cold, which `cold_read_seconds`
prices apart."""

CYCLES_PER_RELAYOUT_ELEMENT = 1.0
"""Core clocks per element of a relayout copy, unless the spec gives `cycles_per_relayout_element`
(`--device host` solves it on a conv's weight relayout timed there): the export's scalar loop nest (`_copy` in
`passes/export_mlir.py`: index arithmetic, one load, one strided store per element). Measured
(`strata measure`, 1 thread, glibc's heap kept mapped so that no page is faulted in:
`MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`): ResNet-18's (HW=64 W0=16) OIHW -> OHWI f32
weight relayouts, 9k to 147k elements, 0.24 to 0.26 ns per element at 3.8 GHz."""

CYCLES_PER_MISSED_ELEMENT = 4.5
"""Core clocks per element of an element-by-element copy whose strided side misses the L1d: each
element its own cache line, the line evicted before the walk comes back to it (`strided_cycles`),
so every access waits on the L2. Measured (`strata measure` of a 3x3 stride-2 max pool alone,
1 thread, median of 100): the NCHW -> NHWC relayout of its f32 input, 16 x 32 x 32 (64 B stride;
the 32 x 32 lines the walk writes before it returns to the first, 64 KiB, overflow the 48 KiB
L1d) 17.8 us, 4.1 clocks per element; 64 x 32 x 32 (256 B stride) 114 us, 6.6 clocks; the same
relayout in i8 (16 B stride: 4 elements a line) 2.2 us. Checked: the pool's own NCHW tile load of
the NHWC buffer (17k elements), the pool 22.8 us against 29.7 estimated."""

MAX_INTERLEAVE_FACTOR = 8
"""The most elements LLVM's loop vectoriser groups into one interleaved access (`max-interleave-group-factor`,
8 by default): a tile walk whose walked dims inside a dim contiguous in its buffer hold at most this many
elements is unrolled over them and vectorised along that dim, its accesses shuffled in registers
(`interleaved_walk`). Measured (`strata measure`, 1 thread, the fastest of 3 processes' medians of 20, the
Zen 4 guest, 2026-12-06): ResNet-18's last 2 x 2 NCHW tiles of NHWC buffers, 128 channels, f32 global
average pool 0.23 us (0.39 estimated as a scalar walk) and i8 dequantize 0.21 us (0.54); the 4 x 4 tiles
(16 elements inside the channel dim) stay scalar walks, 1.6 us against 1.0 estimated. A softmax's rows
show the same bound: 8 elements a row 5.5 clocks an element, 10 to 31 gathered at 14 to 23."""

BF16_ROUNDING_OPS = 1.6
"""Operations (at `cycles_per_map_op`) per element of rounding an f32 to bf16 as the export writes it
(`Emitter.bf16_bits`: about 12 integer operations a vector): `cast(w: f32[64, 1024], dtype=bf16)`
measured 6.3 us alone, where its bytes priced 4.1 (the Zen 4 guest, 2026-12-07)."""

BF16_RESULT_OPS = 2.6
"""Operations per element of an elementwise op whose result is bf16 (not a cast, `BF16_ROUNDING_OPS`):
its operands widened, the op in f32 and the rounding. Measured alone on 64 x 1024 (the Zen 4 guest,
2026-12-07): a bf16 multiply 10.0 us, a bf16 relu 10.3 us, where their bytes priced 4.1 and 2.7; a
multiply of 8 x 128 by a broadcast row 0.16 us. The bf16 ops of a 16-bit model each round their
result, as the reference does."""

CYCLES_PER_MAX_ELEMENT = 0.3
"""Core clocks per element a max or min reduction reads (not by rows, `row_ops`): LLVM vectorises
the NaN-propagating `maximumf` with a compare and a blend beside each max, several clocks a
vector. Measured alone (`strata measure`, 1 thread, the fastest of 3 processes, the Zen 4 guest,
2026-12-08): a row max of 64 x 1024 f32 6.3 us (0.35 clocks an element), of 32 x 4097 10.4 us
(0.29), where a row sum of the same took 2.4 and 4.9 us (`CYCLES_PER_FLOP`)."""

CYCLES_PER_WINDOW_ELEMENT = 1.65
"""Core clocks per window element of a max pool (its output elements times the window's cells):
the export pads the input into a tile, then walks each window cell over the output rows at the
stride, a compare and a select per element. Measured alone (`strata measure`, 1 thread, the
fastest of 3 processes' means of 100, the Zen 4 guest, 2026-12-08), 3 x 3 windows at stride 2,
padding 1, NCHW f32: 16 x 32 x 32 16.7 us (1.66 clocks), 16 x 64 x 64 62.9 us (1.57), 64 x 56 x 56
203 us (1.65). Priced as FLOPs (`CYCLES_PER_FLOP`) it had been 0.64 of that. An average pool
stays at `CYCLES_PER_FLOP`, far under its time: 47 us on the first shape, 125 on the last (84 and
591 while its padding was copied element by element, `Emitter.pad`), which no per-cell price
fits."""

ROW_FUNCTION_OPS = (g.SoftmaxOp, g.LogSoftmaxOp, g.NormOp)
"""The row-wise functions the export computes in f32 whatever float they read (`passes/_linalg.py`,
`softmax`, `layernorm`): of a bf16 tile, its elements widened as each pass reads them and the
result rounded, at `BF16_RESULT_OPS` per element (`map_work`). Measured alone (`strata measure`,
1 thread, the fastest of 3 processes, the Zen 4 guest, 2026-12-08), bf16 against f32: RMS norm of
64 x 1024 17.5 against 15.0 us, layer norm 23.7 against 17.6 us, softmax of 32 x 4097 130.9
against 106.9 us (estimated 20.4, 24.3, 110.6 in bf16)."""

OPS_PER_ELEMENT = {g.LayerNormOp: 7, g.RmsNormOp: 4, g.QuantizeOp: 5}
"""Element operations per element of the ops whose shared FLOP convention (`dialects/graph/flops.py`:
8 per norm element, 1 per quantized one) is far from what the export emits (`passes/_linalg.py`):
a layer norm sums, centres, squares, sums and divides, scales, shifts (7); an RMS norm squares,
sums, divides, scales (4). Measured alone (`CYCLES_PER_FLOP`): RMS norm 64 x 256 13.5 us, layer
norm of the same shape 21.6 us (ratio 1.6; 7/4 = 1.75); in LLaMA (S=64 D=256) its RMS norms
15.5 us. A quantize divides, rounds to even, adds the zero point, saturates and converts (5):
f32 -> i8, 64 x 1024 25.4 us, 1 x 3 x 64 x 64 4.6 us (1.45 clocks per element, `CYCLES_PER_MAP_OP`)."""

DEQUANTIZE_TO_BF16_OPS = 2.1
"""Operations (at `cycles_per_map_op`) per element of a dequantize to bf16, whose rounding the export
writes in integer operations (`Emitter.bf16_bits`: a shift, a mask, two adds, a NaN test and
select): fitted on one `dequantize(w: i8[64, 1024], s, dtype=bf16)` measured alone (8.0 us, 0.45
clocks an element, where its 3 bytes an element priced 0.1; the Zen 4 guest, 2026-12-07). To f16
(one `vcvtps2ph`) it measured 3.8 us, as to f32 (3.0 us): `OPS_PER_ELEMENT`'s."""

FINITE_SCALES_OPS_SHARE = 11 / 15
"""Share of a dequantize's operations left in the micro-kernel's widening when the weight's scales are
all finite, the case priced (`_linalg.dequantized_rows(finite=True)`: no NaN test in the rounding):
11 of the 15 vector operations per 16 weights of the generated loop (objdump of `[1, 4096] @
dequantize(i4[4096, 11008])`). Measured alone (the Zen 4 guest, 2026-12-07, fastest of 3 processes):
`[1, 512] @ dequantize(i4[512, 1024])` 80 -> 62 us, estimated 77 -> 62; `[1, 1024] @ dequantize(i8[1024,
1024])` 161 -> 125 to 143 us, estimated 167 -> 132."""

ROW_CYCLES_PER_LANE = 0.25
"""Core clocks per operation and vector lane of the ops the export writes as one masked vector per
row (`SHORT_ROWS`; `row_work`): loads, the operation, a reduction's tree and the masked store,
several rows in flight. Measured (`strata measure`, 1 thread, median of 50, the Zen 4 guest,
2026-12-06, one-op models of 64 rows): layer norm of 16 (7 operations an element) 0.52 us, 0.21
clocks per operation and lane beyond the call. Checked: layer norm of 10 and 31 (0.57, 0.92 us),
RMS norm of 10 to 31 (0.38 to 0.86 us), sums of rows of 10 to 31 (0.11 to 0.15 us), softmax of
10 to 31 (0.89 to 1.74 us, the fastest of 3 processes' medians of 50, estimated at 0.83 to 1.10 of
that; its exponentials run in a flat loop, `CYCLES_PER_FLOP`)."""

SECOND_VECTOR_SHARE = 0.6
"""A short row's second vector (rows of 17 to 31) at this share of its first's clocks
(`row_vector_cycles`): measured (`strata measure`, 1 thread, the fastest of 3 processes, the Zen 4
guest, 2026-12-08), f32 layer norm of 64 x 24 0.80 us and 64 x 31 0.90 against 64 x 16 0.55 (1.46,
1.64 times); RMS norm 0.62 and 0.71 against 0.39."""

ROW_OPS = {g.SoftmaxOp: 4, g.LayerNormOp: 7, g.RmsNormOp: 4, g.SumOp: 1, g.MeanOp: 1, g.ReduceMaxOp: 1,
           g.ReduceMinOp: 1}
"""Operations per element that the export runs by rows when the row is short (`row_work`): a
softmax's max, shift, sum and divide (its exponential is a flat loop over the tile), a norm's
`OPS_PER_ELEMENT`, a reduction's combine."""

CALL_LATENCY_S = 1.6e-8
"""One kernel call of the native module: a function call, its tile buffers' allocations and frees.
Measured (`strata measure`, 1 thread, 200 runs, the Zen 4 guest, 2026-12-07): a 128-element
multiply alone, its operands read in place and hot, 17 ns, the clock's own 24 ns a bracket taken
out (with it, 40 ns was priced here before). Its compute is 2 ns of vector work and its 1.5 KB a
few L1 hits. (The multiply of 16 elements alone takes 32 to 38 ns; in ResNet-18 int8, HW=64 W0=16,
its scale multiplies of 16 to 128 elements 17 to 45 ns.)"""


def _bandwidth(spec: DeviceSpec, level: str, cores: int) -> float:
    """Bytes/s `cores` cores read from `level` (`l1`, `l2`, `l3`, `dram`): per-core figures times cores, capped at the chip's."""
    if level in ("l1", "l2"):
        return spec[f"{level}_bandwidth_per_core"] * cores
    chip = spec[f"{level}_bandwidth"]
    per_core = spec.get(f"{level}_bandwidth_per_core")
    return min(chip, per_core * cores) if per_core else chip


def speedup(kernel: cpu.KernelOp, spec: DeviceSpec) -> float:
    """How many times faster than one core the kernel's tiles run on the cores it uses (load balance included)."""
    tiles = kernel.parallel_tiles.value.data
    used = min(kernel.threads.value.data, spec["cores"], tiles)
    return tiles / -(-tiles // used)


def fill_steps(steps: float, spec: DeviceSpec) -> float:
    """
    A fixed cost of loads and stores, measured as `steps` k steps of the micro-kernel on a core of
    `FILL_PIPES` FMA pipes, in k steps of `spec`'s core: the loads and stores take as many clocks
    (about one vector a clock on either), a k step takes `2 / fma_pipes` times as many (Zen 4 issues
    one 16-lane FMA a clock, the Xeon two), so a core with fewer pipes spends fewer of its steps.
    """
    return steps * spec["fma_pipes"] / FILL_PIPES


def loop_share(share: float, spec: DeviceSpec) -> float:
    """A loop nest's share of the FMA peak measured on the Xeon (`LOOP_PEAK_FLOPS_PER_CLOCK`), on `spec`'s core:
    the same flops a clock, capped at its peak."""
    return min(1.0, share * LOOP_PEAK_FLOPS_PER_CLOCK / (spec["simd_lanes_f32"] * spec["fma_pipes"] * 2))


def micro_kernel_efficiency(kernel: cpu.KernelOp, spec: DeviceSpec) -> float:
    """Share of the FMA peak a GEMM's micro-kernel runs at: the ceiling, the blocks' padding, the k loop."""
    block = kernel.block()
    tiles, bounds = kernel.tile_sizes.get_values(), kernel.bounds.get_values()
    rank = len(kernel.loop_order.get_values())
    columns = min(tiles[rank - 1], bounds[rank - 1])
    if kernel.kind.data == "conv":
        return conv_efficiency(kernel, spec)
    k, depth = (tiles[-1], bounds[-1]) if len(tiles) > rank else (1, 1)
    # Fixed costs in steps of k, added to the K steps: per k tile the accumulators' loads and
    # stores, per output tile its fill (so the time grows with every dim: K + 2 K/k + 80 on the Xeon).
    output_steps = fill_steps(OUTPUT_TILE_FILL_K, spec)
    fill = depth / (depth + fill_steps(MICRO_KERNEL_FILL_STEPS, spec) * -(-depth // k) + output_steps)
    if not block:
        # Vectorised along the output's columns: a last vector the columns do not fill is masked.
        # No register accumulators to fill and store per k tile: the loops accumulate in memory,
        # and `LOOP_MATRIX_EFFICIENCY` (measured on attention's products) holds their overheads.
        # A batched GEMM's output tiles still pay their zeroing and store (`OUTPUT_TILE_FILL_K`),
        # so it never costs less than the same GEMM with one batch on the micro-kernel.
        lanes = kernel.vector_lanes.value.data
        lane_share = columns / (-(-columns // lanes) * lanes)
        output_fill = depth / (depth + output_steps) if kernel.kind.data == "gemm" else 1.0
        return loop_share(LOOP_MATRIX_EFFICIENCY, spec) * lane_share * output_fill
    rows = min(tiles[rank - 2], bounds[rank - 2]) if rank >= 2 else 1
    padding = _block_share(rows, columns, block)
    # `b` packed once per tile (both operands plain loads) or read in place (`a` computed: a
    # transposed or reshaped tile).
    ceiling = spec.get("gemm_efficiency", 1.0)
    if not kernel.packed_bytes.value.data:
        ceiling = spec.get("unpacked_gemm_efficiency", min(ceiling, loop_share(UNPACKED_GEMM_EFFICIENCY, spec)))
    return ceiling * padding * fill


def conv_efficiency(kernel: cpu.KernelOp, spec: DeviceSpec) -> float:
    """
    A convolution's share of the FMA peak. As an implicit GEMM (a `micro_kernel`
    block: f32, ungrouped) `W[O, K] @ cols[K, N*Y*X]`: the micro-kernel's
    ceiling (`gemm_efficiency`, as a GEMM's) times the block's useful share (the output
    tile's O rows over `mr`, its N*Y*X columns over `nr`: a 2x2 output fills 4 of 16 lanes)
    times `K / (K + OUTPUT_TILE_FILL_K)` (in the core's steps, `fill_steps`); the patch
    gather before it is a copy phase (`patch_elements`). Else the same product in LLVM's
    vector loops where ungrouped (integer, low precision: `product_share`, after the same
    gather), or scalar loops over the window where grouped (`CONV_EFFICIENCY`), with the
    same fill (every output tile is zeroed and stored on either path) at the loops' share
    of the vector units' rate: the fill's `OUTPUT_TILE_FILL_K` steps are that share times
    as many of the loops' K steps (a 1x1 int8 conv of 16 channels, K = 16, ran 2.7 times
    faster than a fill of 40 scalar steps predicts).
    """
    tiles, bounds = kernel.tile_sizes.get_values(), kernel.bounds.get_values()
    depth = max(1, kernel.matrix_flops.value.data // (2 * math.prod(bounds)))
    output_steps = fill_steps(OUTPUT_TILE_FILL_K, spec)
    block = kernel.block()
    if not block:
        share = CONV_EFFICIENCY if conv_groups(kernel) > 1 else product_share(_tile_pixels(kernel), spec)
        return share * depth / (depth + output_steps * share)
    output_fill = depth / (depth + output_steps)
    rows = min(tiles[1], bounds[1])
    columns = _tile_pixels(kernel)
    return spec.get("gemm_efficiency", 1.0) * _block_share(rows, columns, block) * output_fill


def product_cycles(pixels: int, lanes: int, vector: float = CYCLES_PER_PRODUCT_VECTOR,
                   element: float = CYCLES_PER_PRODUCT_ELEMENT) -> float:
    """
    Core clocks of one weight element's `pixels` multiply-adds in the convolution product, at
    `vector` clocks a vector of its pixel loop and `element` a scalar multiply-add
    (`CYCLES_PER_PRODUCT_VECTOR`; at most `UNROLLED_PIXELS` at the shipped vector rate).
    """
    if pixels <= UNROLLED_PIXELS:
        # Unrolled whole and vectorised along K: other code than the pixel loop's (`vector`).
        return CYCLES_PER_PRODUCT_VECTOR / lanes * pixels
    vector_cycles = vector / lanes
    group = lanes * PRODUCT_INTERLEAVE
    if pixels < group:
        return element * pixels
    vectorised = pixels // lanes * lanes
    return PRODUCT_LOOP_CYCLES + vector_cycles * vectorised + element * (pixels - vectorised)


def product_share(pixels: int, spec: DeviceSpec) -> float:
    """
    The share of the FMA peak of an ungrouped convolution's product off the micro-kernel
    (`product_cycles`, at the spec's `cycles_per_product_vector` and `cycles_per_product_element`
    where it gives them: `--device host` solves both on int8 convolutions timed there).
    """
    lanes = spec["simd_lanes_f32"]
    cycles = product_cycles(pixels, lanes, spec.get("cycles_per_product_vector", CYCLES_PER_PRODUCT_VECTOR),
                            spec.get("cycles_per_product_element", CYCLES_PER_PRODUCT_ELEMENT))
    return min(1.0, 2 * pixels / (cycles * lanes * spec["fma_pipes"] * 2))


def conv_groups(kernel: cpu.KernelOp) -> int:
    """The groups of the kernel's convolution (1 without one)."""
    conv = next((op for op in kernel.walk() if isinstance(op, g.Conv2DOp)), None)
    return conv.groups.value.data if conv is not None else 1


def patch_elements(kernel: cpu.KernelOp) -> int:
    """
    Elements the convolution's im2col copies per call (an ungrouped one, on the micro-kernel or
    off it, `product_share`; 0 otherwise): it writes K x the output tile's N*Y*X per tile, and a
    tile of several images (N > 1) is transposed from `[O, N, Y, X]` to the output's layout after
    the product (its O x N*Y*X outputs once more).
    """
    if kernel.kind.data != "conv" or conv_groups(kernel) > 1:
        return 0
    tiles, bounds = kernel.tile_sizes.get_values(), kernel.bounds.get_values()
    depth = max(1, kernel.matrix_flops.value.data // (2 * math.prod(bounds)))
    images = min(tiles[0], bounds[0])
    transposed = min(tiles[1], bounds[1]) if images > 1 else 0
    return (depth + transposed) * _tile_pixels(kernel) * _tile_iterations(kernel)


def _tile_pixels(kernel: cpu.KernelOp) -> int:
    """A convolution tile's output pixels, N*Y*X: the columns of its implicit GEMM."""
    tiles, bounds = kernel.tile_sizes.get_values(), kernel.bounds.get_values()
    return math.prod(min(tiles[d], bounds[d]) for d in (0, 2, 3))


def _block_share(rows: int, columns: int, block: tuple[int, ...]) -> float:
    """The useful share of the (mr, nr) register blocks over a rows x columns output tile (edges padded)."""
    mr, nr = block
    return rows / (-(-rows // mr) * mr) * columns / (-(-columns // nr) * nr)


def _tile_iterations(kernel: cpu.KernelOp) -> int:
    bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
    return math.prod(-(-b // t) for b, t in zip(bounds, tiles))


def copy_bytes(kernel: cpu.KernelOp, ops: list[tuple[Operation, int]]) -> int:
    """L2 bytes of the copy phases the core waits for: tiles copied into their buffers (not those read
    in place, `loop.reads_in_place`), `b` packed and a copy kernel's results materialised
    (`materialised_bytes`), each read and written; `ops` the kernel's `body_ops`."""
    in_place = sum(storage_bytes(op.result.type) * times for op, times in ops if loop.reads_in_place(op))
    return (2 * (kernel.read_bytes.value.data - in_place) + 2 * kernel.packed_bytes.value.data * _tile_iterations(kernel)
            + materialised_bytes(kernel, ops))


def _level_of(kernel: cpu.KernelOp, spec: DeviceSpec, levels: dict[SSAValue, str] | None):
    """Where each operand of the kernel lies (`levels`, `residence`'s); without them, every operand in
    the L3, or in DRAM when the kernel's data exceeds the L3."""
    unique = min(kernel.read_bytes.value.data, sum(storage_bytes(v.type) for v in kernel.ins))
    default = "l3" if unique + kernel.write_bytes.value.data <= spec["l3_bytes"] else "dram"
    return lambda value: default if levels is None else levels.get(value, default)


def outer_copy_seconds(kernel: cpu.KernelOp, spec: DeviceSpec, ops: list[tuple[Operation, int]],
                       levels: dict[SSAValue, str] | None, cores: int) -> float:
    """
    What the copy phases wait beyond the L2's rate (`copy_bytes` prices them there) for the first
    read of each operand that lies in the L3 or DRAM (`_level_of`): those bytes come at that
    level's bandwidth. The core stalls on a tile copy, so its misses do not hide under the FMAs
    as the other streams do. Measured (`strata measure`, 1 thread, the Zen 4 guest, 2026-12-07):
    `[1, 1024] @ dequantize(i4[1024, 1024])` 182 us alone (its 1 MiB of weights in the L3), 265
    to 285 us in a chain of 40 such layers (40 MiB: each layer's weights a call old, in DRAM).
    A slab read in place tile after tile (`loop.in_place_slab`), or a product's `b` read where it
    lies (`loop.product_rhs`), stalls the same way, at the level's whole price (no copy through
    the L2): the int4 decode step's GEMMs (`llama_decode_int4`, reduced) measured 214 to 229 us for 153 us of widening and FMAs
    and 1.1 MiB from DRAM (47 us at its bandwidth), its LM head 448 to 495 us for 89 and 8 MiB
    (335 us), its attention products 65 to 68 us for 38 and 0.5 MiB (21 us).
    """
    operand = dict(zip(kernel.body.block.args, [*kernel.ins, *kernel.outs]))
    copied: dict[SSAValue, int] = {}
    in_place: dict[SSAValue, int] = {}
    for op, times in ops:
        if not isinstance(op, loop.LoadOp) or op.source not in operand:
            continue
        if not loop.reads_in_place(op):
            into = copied
        elif op.result.type.get_shape() != op.source.type.get_shape() or loop.product_rhs(op.result):
            into = in_place  # a slab read tile after tile, or a product's `b` read as it lies
        else:
            continue  # a whole buffer an elementwise or row loop streams under its work (`memory_bytes`)
        value = operand[op.source]
        into[value] = into.get(value, 0) + storage_bytes(op.result.type) * times
    level_of, l2 = _level_of(kernel, spec, levels), _bandwidth(spec, "l2", cores)

    def stall(loaded: dict[SSAValue, int], already: float) -> float:
        return sum(min(nbytes, storage_bytes(value.type)) * (1 / _bandwidth(spec, level_of(value), cores) - already)
                   for value, nbytes in loaded.items() if level_of(value) in ("l3", "dram"))

    return stall(copied, 1 / l2) + stall(in_place, 0.0)


def cold_read_seconds(kernel: cpu.KernelOp, spec: DeviceSpec, levels: dict[SSAValue, str] | None) -> float:
    """
    What the core waits before its first reads of the inputs that lie in DRAM (`_level_of`) stream:
    `dram_latency_s` each (a page walk and a miss before the prefetchers run ahead; 0 where the spec
    does not give it), as the export's passes over a kernel's ops touch its inputs one after another.
    An output costs nothing of the kind: its stores retire into the store queue. Measured (`strata
    measure`, 1 thread, the Zen 4 guest, 2026-12-07; the host probe's `dram_latency_s` 0.4 to 0.7 us):
    the int4 decode step's RMS norms (`llama_decode_int4`, reduced; 1024 bf16, their 2 KiB of weights
    in DRAM) 1.8 to 3.0 us for 1.0 us of work, its concatenation of a new key onto the cache (both
    inputs in the L1, the 4 KiB output in DRAM) 0.4 to 0.6 us for 0.4.
    """
    latency = spec.get("dram_latency_s", 0.0)
    level_of = _level_of(kernel, spec, levels)
    return latency * sum(level_of(value) == "dram" for value in set(kernel.ins))


def memory_bytes(kernel: cpu.KernelOp, spec: DeviceSpec, copied: int,
                 levels: dict[SSAValue, str] | None = None) -> tuple[int, dict[str, int]]:
    """
    The kernel's L2 traffic (`copied`, its `copy_bytes`, and a GEMM's re-reads of its tiles) and the
    bytes it streams from the levels its buffers lie in (`levels`, each operand's: `residence`;
    without them, every buffer in the L3, or in DRAM when the kernel's data exceeds the L3): each
    input's share of the unique inputs, the tile re-reads (`read_bytes` beyond them) where the
    largest input lies, each output where it lies, twice from the L3 or DRAM: a store to a line
    not in the core's caches reads it first (write-allocate) and writes it back later. Found
    in-sample: LLaMA's transposing and concatenating copy kernels (S=64 D=256) took 1.7 to 2.9
    times an estimate that counted them once, on the host's L3 bandwidth measured as such (the Zen
    4 guest). A spec's `l3_store_cost` and `dram_store_cost` (`--device host` probes them: read over
    store bandwidth) replace the 2: on the Granite Rapids guest a thread stores whole lines into
    the L3 at 0.95 of its read rate and into DRAM at 0.68 (costs 1.05 and 1.48; the same copies
    measured 0.64 to 0.67 of their estimate with 2).
    """
    read, write = kernel.read_bytes.value.data, kernel.write_bytes.value.data
    ins = [(v, storage_bytes(v.type)) for v in kernel.ins]
    outs = [(v, storage_bytes(v.type)) for v in kernel.outs]
    total_in, total_out = sum(b for _, b in ins), sum(b for _, b in outs)
    unique = min(read, total_in)
    level_of = _level_of(kernel, spec, levels)
    streams: dict[str, int] = {}

    def add(value: SSAValue, nbytes: int, stored: bool = False) -> None:
        level = level_of(value)
        cost = spec.get(f"{level}_store_cost", 2.0) if stored and level in ("l3", "dram") else 1
        streams[level] = streams.get(level, 0) + round(nbytes * cost)

    for value, nbytes in ins:
        add(value, nbytes * unique // total_in)
    if read > unique and ins:
        add(max(ins, key=lambda pair: pair[1])[0], read - unique)
    for value, nbytes in outs:
        add(value, nbytes * write // max(total_out, 1), stored=True)
    l2 = copied
    if kernel.block():
        mr, nr = kernel.block()
        l2 += kernel.matrix_flops.value.data * 2 // nr
        if kernel.l1_bytes.value.data > spec["l1d_bytes_per_core"] // 2:
            # The strip of b no longer stays in L1 beside a's rows: every k step of
            # every block re-reads nr floats of it for 2 mr nr FLOPs.
            l2 += kernel.matrix_flops.value.data * 2 // mr
    return l2, streams


def residence(module: ModuleOp, spec: DeviceSpec, skip: frozenset[Operation]) -> dict[Operation, dict[SSAValue, str]]:
    """
    Per kernel and copy of the model function (but `skip`, the work at load), the level each buffer
    it reads or writes lies in when it starts, by its reuse distance (Mattson et al.'s stack
    distance, 1970): the bytes of the distinct buffers touched since its last touch, its own
    included, in a loop of calls, so that a param, an input or a fresh allocation (the heap hands
    the same blocks back each call) was last touched a call ago. It lies in the L1d, else the L2
    (per core, times the cores the kernels' threads use), else the L3 if the distance fits it, else
    in DRAM. Measured (`strata measure`, 1 thread, the Zen 4 guest, 2026-12-07): a relu of 64 x 1024
    alone (its 512 KiB in the L2) 4.6 us, 7.1 at the L3's bandwidth with write-allocate.
    """
    fn = model_function(module)
    roots = loop.view_roots(fn.body.block)
    touches = loop.buffer_touches(fn, (cpu.KernelOp,), skip)
    threads = max((op.threads.value.data for op, _ in touches if isinstance(op, cpu.KernelOp)), default=1)
    cores = min(threads, spec["cores"])
    capacity = (("l1", spec["l1d_bytes_per_core"] * cores), ("l2", spec["l2_bytes_per_core"] * cores),
                ("l3", spec["l3_bytes"]))
    size = {roots.get(v, v): storage_bytes(v.type) for _, buffers in touches for v in buffers}
    recent: dict[SSAValue, None] = {}  # least recently touched first

    def touch(buffers) -> None:
        for v in buffers:
            recent.pop(roots.get(v, v), None)
            recent[roots.get(v, v)] = None

    for _, buffers in touches:  # the call before
        touch(buffers)
    levels = {}
    for op, buffers in touches:
        distance, since = {}, 0
        for b in reversed(recent):
            since += size[b]
            distance[b] = since
        levels[op] = {v: next((name for name, room in capacity if distance[roots.get(v, v)] <= room), "dram")
                      for v in buffers}
        touch(buffers)
    return levels


def strided_cycles(layout, shape: Sequence[int], walk: Sequence[int], element_bytes: int, spec: DeviceSpec) -> float:
    """
    Clocks per element of walking a `walk`-shaped window of a buffer holding a logical `shape` in
    `layout`, element by element in logical order (the export's relayout loop nests and
    element-by-element tile loads): 0 where the innermost walked dim is contiguous (LLVM
    vectorises it, priced with the loop's operations), `CYCLES_PER_RELAYOUT_ELEMENT` where
    consecutive elements lie in one cache line or the lines are reused from the L1d, else
    `CYCLES_PER_MISSED_ELEMENT`. A line is reused when the walk comes back to it: after the
    dims inside the one that moves within a line, whose lines must fit the L1d meanwhile.
    """
    line = 64
    rank = len(shape)
    in_line = spec.get("cycles_per_relayout_element", CYCLES_PER_RELAYOUT_ELEMENT)
    if layout.tiles or rank == 0:
        return in_line
    stride = _strides(layout, shape, element_bytes)
    moving = [d for d in range(rank) if walk[d] > 1]
    if not moving or stride[moving[-1]] == element_bytes:
        return 0.0
    if stride[moving[-1]] < line:
        return in_line
    for position in range(len(moving) - 2, -1, -1):
        if stride[moving[position]] < line:
            footprint = line * math.prod(walk[d] for d in moving[position + 1:])
            return in_line if footprint <= spec["l1d_bytes_per_core"] else CYCLES_PER_MISSED_ELEMENT
    return CYCLES_PER_MISSED_ELEMENT


def _strides(layout, shape: Sequence[int], element_bytes: int) -> dict[int, int]:
    """Bytes between neighbours along each logical dim of a buffer holding `shape` in `layout` (untiled)."""
    order = list(layout.perm)
    return {d: element_bytes * math.prod(shape[e] for e in order[order.index(d) + 1:]) for d in range(len(shape))}


def interleaved_walk(layout, shape: Sequence[int], walk: Sequence[int], element_bytes: int) -> bool:
    """
    Whether LLVM vectorises a tile walk as interleaved accesses (`MAX_INTERLEAVE_FACTOR`): some walked dim
    is contiguous in the buffer and the walked dims inside it hold at most that many elements.
    """
    if layout.tiles or not shape:
        return False
    stride = _strides(layout, shape, element_bytes)
    inner = 1
    for d in reversed(range(len(shape))):
        if walk[d] == 1:
            continue
        if stride[d] == element_bytes:
            return True
        inner *= walk[d]
        if inner > MAX_INTERLEAVE_FACTOR:
            return False
    return False


def _element_bytes(type_) -> int:
    return max(1, storage_bytes(type_) // max(1, num_elements(type_.get_shape())))


def body_ops(kernel: cpu.KernelOp) -> list[tuple[Operation, int]]:
    """The ops of the kernel's body outside its `scf.for`s' headers, each with how often it runs in all
    (walked once per estimate, `kernel_cost`, for the copy phases' sums)."""
    found = []

    def visit(block, times: int, outer: dict) -> None:
        for op in block.ops:
            if isinstance(op, scf.ForOp):
                visit(op.body.block, iterations(op, times, outer), {**outer, op.body.block.args[0]: op})
            else:
                found.append((op, times))

    visit(kernel.body.block, 1, {})
    return found


def _moves_data(kernel: cpu.KernelOp, op: Operation) -> bool:
    """A transpose or concatenation that a copy kernel materialises (elsewhere a GEMM or attention reads it in place)."""
    return kernel.kind.data == "copy" and isinstance(op, g.TransposeOp | g.ConcatOp)


def transpose_walk_cycles(op: g.TransposeOp, spec: DeviceSpec) -> float:
    """Clocks per element of a transpose's copy: its input walked in the output's order (`strided_cycles`)."""
    perm = op.perm.get_values()
    shape = op.input.type.get_shape()
    # The output's dims (d reads input dim perm[d]) held in the input's order.
    order = sorted(range(len(perm)), key=lambda d: perm[d])
    out_shape = [shape[p] for p in perm]
    return strided_cycles(LayoutAttr(order), out_shape, out_shape, _element_bytes(op.input.type), spec)


def strided_access_cycles(kernel: cpu.KernelOp, spec: DeviceSpec, ops: list[tuple[Operation, int]]) -> float:
    """
    Clocks of the kernel's tile loads and stores that walk their buffers with a stride
    (`strided_cycles`), but an ungrouped convolution's weight tile held as rows (`loop.weight_rows`)
    and walks LLVM vectorises as interleaved accesses (`interleaved_walk`), and of a copy kernel's
    transposes that move the innermost dim (`transpose_walk_cycles`); `ops` the kernel's `body_ops`.
    """
    total = 0.0
    for op, times in ops:
        if isinstance(op, loop.LoadOp | loop.StoreOp):
            if loop.weight_rows(op, kernel.vector_lanes.value.data) is not None:
                continue  # copied by whole rows for the convolution's product, by vectors
            buffer, tile = (op.source, op.result.type) if isinstance(op, loop.LoadOp) else (op.dest, op.value.type)
            walk = tile.get_shape()
            layout, shape, size = layout_of(buffer.type), buffer.type.get_shape(), _element_bytes(buffer.type)
            if interleaved_walk(layout, shape, walk, size):
                continue  # vectorised along the contiguous dim, priced with the loop's operations
            per_element = strided_cycles(layout, shape, walk, size, spec)
            total += per_element * num_elements(walk) * times
        elif isinstance(op, g.TransposeOp) and _moves_data(kernel, op):
            total += transpose_walk_cycles(op, spec) * num_elements(op.result.type.get_shape()) * times
    return total


def materialised_bytes(kernel: cpu.KernelOp, ops: list[tuple[Operation, int]]) -> int:
    """
    Bytes a copy kernel's transposes and concatenations read and write into their results, each a
    pass of its own (the export's `linalg.generic` copies), beside the tile copies; `ops` the
    kernel's `body_ops`.
    """
    return sum(2 * storage_bytes(op.results[0].type) * times for op, times in ops if _moves_data(kernel, op))


def flop_overcount(kernel: cpu.KernelOp) -> int:
    """
    FLOPs the shared convention counts for the kernel's `OPS_PER_ELEMENT` ops beyond the
    operations the export emits (negative where it counts fewer); not a quantize's, which
    `map_work` prices whole.
    """
    bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
    rank = len(kernel.loop_order.get_values())
    # Such an op sits in the output tile loops (a norm's row is never split; a quantize is
    # elementwise or an epilogue): it runs once per output tile.
    output_tiles = math.prod(-(-b // t) for b, t in zip(bounds[:rank], tiles[:rank]))
    extra = 0
    for op in kernel.body.walk():
        ops = OPS_PER_ELEMENT.get(type(op))
        if ops is not None and not isinstance(op, MAP_OPS):
            extra += (op_flops(op) - ops * num_elements(op.results[0].type.get_shape())) * output_tiles
    return extra


def transcendental_cycles(kernel: cpu.KernelOp) -> float:
    """
    Clocks of the kernel's exp-like elements (`transcendentals`, summed over its loops): each at
    its function's price (`TRANSCENDENTAL_CYCLES`, else `CYCLES_PER_TRANSCENDENTAL`), weighted by
    the elements each such op of the body evaluates per run.
    """
    count = kernel.transcendentals.value.data
    if not count:
        return 0.0
    elements = weighted = 0.0
    for op in kernel.body.walk():
        if isinstance(op, loop.OnlineSoftmaxOp):
            n, price = num_elements(op.scores.type.get_shape()), CYCLES_PER_TRANSCENDENTAL
        elif isinstance(op, TRANSCENDENTAL_OPS):
            n = num_elements(op.results[0].type.get_shape())
            price = TRANSCENDENTAL_CYCLES.get(type(op), CYCLES_PER_TRANSCENDENTAL)
        else:
            continue
        elements += n
        weighted += n * price
    return count * (weighted / elements if elements else CYCLES_PER_TRANSCENDENTAL)


def interleaved_reduction(op: Operation) -> bool:
    """
    Whether `op` reduces at most `MAX_INTERLEAVE_FACTOR` elements per result, all in its innermost
    dims (a global average pool of 2 x 2 pixels in NCHW): LLVM unrolls the reduction and vectorises
    along the kept dims, one pass over the tile as an elementwise op's, no dependent chain.
    """
    if isinstance(op, g.GlobalAvgPoolOp):
        axes = [2, 3]
    elif isinstance(op, g.ReductionOp):
        axes = list(op.axes.get_values())
    else:
        return False
    shape = op.input.type.get_shape()
    rank = len(shape)
    return axes == list(range(rank - len(axes), rank)) and math.prod(shape[a] for a in axes) <= MAX_INTERLEAVE_FACTOR


def l1_resident(ops: list[tuple[Operation, int]], spec: DeviceSpec) -> bool:
    """Whether the kernel's tiles (every tensor its body's ops make, once) fit a core's L1d."""
    tiles = sum(storage_bytes(r.type) for op, _ in ops for r in op.results
                if isinstance(r.type, TensorType) and not _in_registers(op))
    return tiles <= spec["l1d_bytes_per_core"]


def _in_registers(op: Operation) -> bool:
    """A cast the micro-kernel does as it reads `b` (`cpu.widened_as_read`), or the dequantize it widens:
    no tile of it is written."""
    widened = cpu.widened_dequantize(op)
    return cpu.widened_as_read(widened if widened is not None else op)


def _pass_bytes(op: Operation) -> int:
    """The bytes a pass of `op` over its tiles moves: every tensor operand read, its result written."""
    return sum(storage_bytes(v.type) for v in (*op.operands, *op.results) if isinstance(v.type, TensorType))


def map_work(ops: list[tuple[Operation, int]], spec: DeviceSpec) -> tuple[int, float]:
    """
    The FLOPs of the kernel's passes over tiles and their clocks, summed over the body with how often
    each op runs: each elementwise op (`MAP_OPS`) and `interleaved_reduction` is one loop over its tile,
    its clocks the larger of its bytes (`_pass_bytes`) at `map_byte_cycles` and a quantize's
    operations (`OPS_PER_ELEMENT`) at `cycles_per_map_op` (a global average pool adds its division's
    pass), a max or min reduction its elements (`CYCLES_PER_MAX_ELEMENT`), a max pool its window
    cells (`CYCLES_PER_WINDOW_ELEMENT`), a bf16 softmax or norm its
    widening and rounding (`ROW_FUNCTION_OPS`); a `loop.store` not done in place (`loop.stores_in_place`) copies its tile into the buffer,
    its bytes read and written. Not the add
    of a tile product into its accumulator, which the micro-kernel's FMAs do (none of the kernel's
    `flops` beyond the matrix FLOPs). The bytes move at the L1's rate where the kernel's tiles fit it
    (`l1_resident`).
    """
    per_byte = map_byte_cycles(spec)
    if l1_resident(ops, spec):
        per_byte *= spec["l2_bandwidth_per_core"] / spec["l1_bandwidth_per_core"]
    per_op = spec.get("cycles_per_map_op", CYCLES_PER_MAP_OP)
    flops, cycles = 0, 0.0
    for op, times in ops:
        if isinstance(op, loop.StoreOp):
            if not loop.stores_in_place(op):
                cycles += per_byte * 2 * storage_bytes(op.value.type) * times
            continue
        if isinstance(op, g.CastOp) and (cpu.widened_dequantize(op.input.owner) is op or cpu.widened_as_read(op)):
            continue  # in the dequantize's loop, or as the micro-kernel reads it
        if isinstance(op, (g.ReduceMaxOp, g.ReduceMinOp)) and not row_ops(op):
            elements = num_elements(op.input.type.get_shape())
            flops += op_flops(op) * times
            cycles += CYCLES_PER_MAX_ELEMENT * elements * times
            continue
        if isinstance(op, g.MaxPool2DOp):
            window = op_flops(op)
            flops += window * times
            cycles += CYCLES_PER_WINDOW_ELEMENT * window * times
            continue
        if isinstance(op, ROW_FUNCTION_OPS) and isinstance(op.results[0].type.element_type, BFloat16Type):
            # Its f32 rows' widening and rounding: passes its FLOPs (`CYCLES_PER_FLOP`) do not count.
            cycles += BF16_RESULT_OPS * num_elements(op.results[0].type.get_shape()) * per_op * times
            continue
        if isinstance(op, MAP_OPS) and not any(isinstance(v.owner, MatrixOp) for v in op.operands):
            elements = num_elements(op.results[0].type.get_shape())
            operations = OPS_PER_ELEMENT.get(type(op), 0) * elements
            moved = _pass_bytes(op)
            bf16 = isinstance(op.results[0].type.element_type, BFloat16Type)
            if bf16 and isinstance(op, g.DequantizeOp):
                operations = DEQUANTIZE_TO_BF16_OPS * elements
                widened = cpu.widened_dequantize(op)
                if _in_registers(op):
                    # In the micro-kernel's registers: its tile read, nothing written.
                    operations *= FINITE_SCALES_OPS_SHARE
                    moved -= storage_bytes(op.result.type)
                elif widened is not None:
                    moved += storage_bytes(widened.result.type) - storage_bytes(op.result.type)
            elif bf16:
                operations = max(operations, (BF16_ROUNDING_OPS if isinstance(op, g.CastOp) else BF16_RESULT_OPS)
                                 * elements)
        elif interleaved_reduction(op):
            operations, moved = 0, _pass_bytes(op)
            if isinstance(op, g.GlobalAvgPoolOp):
                moved += 2 * storage_bytes(op.result.type)
        else:
            continue
        flops += op_flops(op) * times
        cycles += max(operations * per_op, moved * per_byte) * times
    return flops, cycles


def scalar_gathered_elements(ops: list[tuple[Operation, int]]) -> int:
    """Table elements the kernel's gathers read element by element (not `cpu.gathers_by_vectors`); `ops` its `body_ops`."""
    return sum(num_elements(op.result.type.get_shape()) * times for op, times in ops
               if isinstance(op, loop.GatherOp) and not cpu.gathers_by_vectors(op))


def _row_axis_count(op: Operation) -> int:
    """`ROW_OPS`' operations per element of `op` where it runs over the last dim only of a float
    tile (a reduction in f32, a softmax or norm of any float, which the export widens); else 0."""
    count = ROW_OPS.get(type(op))
    if count is None:
        return 0
    type_ = op.operands[0].type
    shape, element = type_.get_shape(), type_.element_type
    if not shape:
        return 0
    last = len(shape) - 1
    if isinstance(op, g.ReductionOp):
        # Reduced in its own type: by rows when that is f32.
        return count if list(op.axes.get_values()) == [last] and isinstance(element, Float32Type) else 0
    # Softmax and the norms compute in f32 whatever the float they read (`passes/_linalg.py`, `widen`).
    return count if op.axis.value.data == last and isinstance(element, (Float32Type, Float16Type, BFloat16Type)) else 0


def row_ops(op: Operation) -> int:
    """
    Operations per element of `op` that the export runs as one masked vector per row
    (`SHORT_ROWS`): an op of `ROW_OPS` over the last dim only of a float tile of rank 2 or more
    whose rows are short; else 0 (the export's loop nests).
    """
    if type(op) not in ROW_OPS or not cpu.by_rows(op.operands[0].type.get_shape()):
        return 0
    return _row_axis_count(op)


def row_vector_cycles(r: int) -> float:
    """Clocks of one operation over a row of `r` `SHORT_ROWS` elements as masked vectors: one vector's
    lanes at `ROW_CYCLES_PER_LANE`, a second at `SECOND_VECTOR_SHARE` of that."""
    one = cpu.VECTOR_LANES * ROW_CYCLES_PER_LANE
    return one if row_lanes(r) == cpu.VECTOR_LANES else one * (1 + SECOND_VECTOR_SHARE)


def row_work(ops: list[tuple[Operation, int]], per_flop: float = CYCLES_PER_FLOP) -> tuple[int, float]:
    """
    The operations the kernel runs by rows (`row_ops`, summed over the body with how often each
    op runs) and their clocks: each operation once per row over its vectors (`row_vector_cycles`).
    Plus, for rows longer than `SHORT_ROWS`, whose operations the FLOPs price at `per_flop` (the
    spec's `cycles_per_flop`), what lifts each row's operations to at least their price over a
    short row of two vectors: the loop's last vectors and horizontal reductions, and no row
    costing less for growing long. Measured (as
    `SECOND_VECTOR_SHARE`), a layer norm of 64 x 32 0.75 us and 64 x 48 0.97, of 64 x 31 0.95
    (estimated 0.48 and 0.71 without it); RMS norm 0.66 and 0.77 against 0.70.
    """
    operations, cycles = 0, 0.0
    longest_short = max(cpu.SHORT_ROWS)
    floor = max(0.0, row_vector_cycles(longest_short) - 2 * cpu.VECTOR_LANES * per_flop)
    for op, times in ops:
        if type(op) not in ROW_OPS:
            continue
        shape = op.operands[0].type.get_shape()
        count = row_ops(op)
        if count:
            elements = num_elements(shape)
            operations += count * elements * times
            cycles += count * (elements // shape[-1]) * row_vector_cycles(shape[-1]) * times
        elif shape and shape[-1] > longest_short and (count := _row_axis_count(op)):
            cycles += count * (num_elements(shape) // shape[-1]) * floor * times
    return operations, cycles


def kernel_cost(kernel: cpu.KernelOp, spec: DeviceSpec, levels: dict[SSAValue, str] | None = None) -> KernelCost:
    """The kernel's cost (module docstring); `levels`: where its buffers lie (`residence`; default: the L3, or DRAM)."""
    flops, matrix = kernel.flops.value.data, kernel.matrix_flops.value.data
    parallel = speedup(kernel, spec)
    peak = core_peak(spec) * parallel
    matrix_s = matrix / (peak * micro_kernel_efficiency(kernel, spec)) if matrix else 0.0
    ops = body_ops(kernel)
    per_flop = spec.get("cycles_per_flop", CYCLES_PER_FLOP)
    by_rows, row_cycles = row_work(ops, per_flop)
    mapped, map_cycles = map_work(ops, spec)
    cycles = (per_flop * max(0, flops - matrix - flop_overcount(kernel) - by_rows - mapped)
              + map_cycles
              + row_cycles
              + transcendental_cycles(kernel)
              + CYCLES_PER_GATHERED_ELEMENT * scalar_gathered_elements(ops))
    compute_s = matrix_s + cycles / (spec["clock_hz"] * parallel)
    copied = copy_bytes(kernel, ops)
    inner, streams = memory_bytes(kernel, spec, copied, levels)
    moved = {"l2": inner}
    for level, nbytes in streams.items():
        moved[level] = moved.get(level, 0) + nbytes
    cores = max(1, math.ceil(parallel))
    l2_bandwidth = _bandwidth(spec, "l2", cores)
    # The copy phases (tile loads into buffers, packing, a convolution's
    # patches) run between the micro-kernel calls, not under them; the
    # re-reads of `a` and the L3/DRAM streams overlap the FMAs
    # (out-of-order loads, prefetchers).
    copy_cycles = strided_access_cycles(kernel, spec, ops) + CYCLES_PER_PATCH_ELEMENT * patch_elements(kernel)
    copy_s = (copied / l2_bandwidth + copy_cycles / (spec["clock_hz"] * parallel)
              + outer_copy_seconds(kernel, spec, ops, levels, cores))
    streamed_s = sum(nbytes / _bandwidth(spec, level, cores) for level, nbytes in streams.items())
    l2_s = (inner - copied) / l2_bandwidth
    memory_s = max(l2_s, streamed_s)
    threads = kernel.threads.value.data
    latency_s = (CALL_LATENCY_S + cold_read_seconds(kernel, spec, levels)
                 + (spec.get("parallel_region_latency_s", 0.0) if threads > 1 else 0.0))
    if streams_add(kernel, by_rows):
        time_s = max(compute_s + copy_s, l2_s) + streamed_s + latency_s
    else:
        time_s = max(compute_s + copy_s, memory_s) + latency_s
    bound = max((compute_s, "compute"), (max(copy_s, memory_s), "memory"), (latency_s, "latency"))[1]
    return KernelCost(
        name=kernel.kernel_name.data,
        kind=kernel.kind.data,
        ops=[o.data for o in kernel.ops],
        flops=flops,
        bytes=moved,
        time_s=time_s,
        bound=bound,
        utilisation=flops / (time_s * core_peak(spec) * min(threads, spec["cores"])),
        extra={"threads": threads, "parallel_tiles": kernel.parallel_tiles.value.data,
               "micro_kernel": "x".join(map(str, kernel.block())) or "none",
               "compute_s": compute_s, "copy_s": copy_s, "memory_s": memory_s},
    )


VIEW_OPS = frozenset({"graph.reshape", "graph.constant"})
"""Graph ops a kernel's code makes no pass over its tile for (`streams_add`)."""


def streams_add(kernel: cpu.KernelOp, by_rows: int) -> bool:
    """
    Whether the kernel's L3 and DRAM streams add to its work instead of overlapping it: its code is
    passes over tiles one after another (a row kernel's over long rows: their sum, their centred
    squares' sum, the result; a copy or elementwise kernel of two ops or more, each a loop over its
    tile), and the pass that first reads an operand from the L3 or DRAM waits on it while the
    others run on the L1 and L2. Measured (`strata measure`, 1 thread): layer norms after a 40 MB
    stream on the Zen 4 guest (2026-12-08); on the Granite Rapids guest (its L3 read at 28 GB/s a
    core), LLaMA's rotary embedding of q (S=64 D=256: 64 KiB, its cos and sin tables from the L3)
    8.7 us alone and 16.1 in the model, against 5.8 us of passes and a 6.6 us stream.
    """
    if kernel.kind.data == "row":
        return not by_rows
    return kernel.kind.data in ("copy", "elementwise") and sum(o.data not in VIEW_OPS for o in kernel.ops) > 1


def model_copies(module: ModuleOp) -> list[loop.CopyOp]:
    """Every `loop.copy` of the model function, in program order (`relayout_I` is the I-th)."""
    return [op for op in model_function(module).body.block.ops if isinstance(op, loop.CopyOp)]


def copy_cost(copy: loop.CopyOp, spec: DeviceSpec, index: int) -> KernelCost:
    """A copy between kernels (module docstring): a `memcpy`, or the export's element-by-element relayout."""
    moved = 2 * storage_bytes(copy.source.type)
    # The source was last touched a call ago (a param, an input) or by an earlier kernel: from the L3.
    level = "l3" if moved <= spec["l3_bytes"] else "dram"
    memory_s = moved / _bandwidth(spec, level, 1) + (spec.get("dram_latency_s", 0.0) if level == "dram" else 0.0)
    compute_s = 0.0
    if not same_element_order(copy.source.type, copy.dest.type):
        shape = copy.source.type.get_shape()
        per_element = max(spec.get("cycles_per_relayout_element", CYCLES_PER_RELAYOUT_ELEMENT), *(
            strided_cycles(layout_of(side.type), shape, shape, _element_bytes(side.type), spec)
            for side in (copy.source, copy.dest)))
        compute_s = per_element * num_elements(shape) / spec["clock_hz"]
    return KernelCost(
        name=f"relayout_{index}", kind="relayout", ops=["graph.relayout"], flops=0, bytes={level: moved},
        time_s=max(compute_s, memory_s), bound="compute" if compute_s > memory_s else "memory",
        utilisation=0.0, extra={"compute_s": compute_s, "memory_s": memory_s},
    )


def _link(spec: DeviceSpec) -> float:
    if "link_bandwidth" not in spec:
        raise SpecError(
            f"{spec.name}: moving buffers between CPUs needs 'link_bandwidth' (bytes/s) in the spec;"
            f" give it with --spec link_bandwidth=BYTES_PER_S, or compile for one device"
        )
    return spec["link_bandwidth"]


def estimate(module: ModuleOp, spec: DeviceSpec) -> Report:
    at_load = loop.load_plan(model_function(module), (cpu.KernelOp,)).ops
    kernels = hardware_kernels(module)
    threads = max((k.threads.value.data for k in kernels), default=1)
    levels = residence(module, spec, at_load)
    costed = [(k, kernel_cost(k, spec, levels.get(k))) for k in kernels]
    costed += [(c, copy_cost(c, spec, i)) for i, c in enumerate(model_copies(module))]
    costs = [cost for op, cost in costed if op not in at_load]
    costs += [link_transfer_cost(t, _link(spec), i, "link_bandwidth") for i, t in enumerate(transfers(module))]
    costs += collective_costs(module, lambda: Interconnect(_link(spec), 0.0, 0.0, "link_bandwidth"))
    used = chips(module)
    return Report("cpu", spec.name, costs, used * core_peak(spec) * min(threads, spec["cores"]), chips=used,
                  at_load=[cost for op, cost in costed if op in at_load])
