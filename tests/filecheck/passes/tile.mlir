// RUN: strata opt %s --device tpu-v4 -p 'tile' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'tile{target=tpu}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'tile{target=gpu}' --no-debuginfo | filecheck %s --check-prefix=GPU
// RUN: strata opt %s -p 'tile{target=lpu}' --no-debuginfo | filecheck %s --check-prefix=LPU
// RUN: strata opt %s -p 'tile{target=tpu keep=false}' --no-debuginfo | filecheck %s --check-prefix=NOKEEP
// RUN: strata opt %s --device tpu-v4 -p 'tile{sizes=64,32,128 order=1,0}' --no-debuginfo | filecheck %s --check-prefix=SIZES
// RUN: strata opt %s --device tpu-v4 -p 'tile{sizes=64,32,48}' --no-debuginfo | filecheck %s --check-prefix=KDIV
// RUN: strata opt %s --device tpu-v4 -p 'tile{sizes=0,0,0}' --no-debuginfo | filecheck %s --check-prefix=WHOLE
// RUN: strata opt %s -p 'tile{target=tpu},lower-to-loops' --no-debuginfo | filecheck %s --check-prefix=LOOPS
// RUN: not strata opt %s -p 'tile{sizes=abc}' 2>&1 | filecheck %s --check-prefix=ERR-SIZES
// RUN: not strata opt %s -p 'tile{size=64}' 2>&1 | filecheck %s --check-prefix=ERR-OPTION
// A pass failure writes a strata-reproducer-*.mlir into TMPDIR: point it at a scratch folder.
// RUN: rm -rf %t && mkdir -p %t && cd %t && env TMPDIR=%t not strata opt %s -p 'tile{target=npu}' 2>&1 | filecheck %s --check-prefix=ERR-TARGET
// RUN: rm -rf %t && mkdir -p %t && cd %t && env TMPDIR=%t not strata opt %s -p 'lower-to-loops' 2>&1 | filecheck %s --check-prefix=ERR-UNTILED
// RUN: cd %t && env TMPDIR=%t not strata opt strata-reproducer-*.mlir -p 'lower-to-loops' 2>&1 | filecheck %s --check-prefix=ERR-UNTILED

// Layout-stage IR with no device recorded (`--device` or the pass's target
// picks one, which the output then records): a 256x512 @ 512x384
// GEMM with a bias+relu epilogue, a softmax row kernel, and a GEMM whose tiles
// were already chosen (a hand-edited dump, or the tuner's).

builtin.module {
  func.func @t(%x: tensor<256x512xf32, #graph.layout<[0, 1]>> {graph.input = "x"}, %w: tensor<512x384xf32, #graph.layout<[0, 1]>> {graph.param = "w"}, %b: tensor<384xf32, #graph.layout<[0]>> {graph.param = "b"}) -> tensor<256x384xf32, #graph.layout<[0, 1]>> {
    %0 = graph.kernel "gemm_0"(%x, %w, %b) {kind = "gemm"} : (tensor<256x512xf32, #graph.layout<[0, 1]>>, tensor<512x384xf32, #graph.layout<[0, 1]>>, tensor<384xf32, #graph.layout<[0]>>) -> tensor<256x384xf32, #graph.layout<[0, 1]>> {
    ^bb0(%x_1: tensor<256x512xf32>, %w_1: tensor<512x384xf32>, %b_1: tensor<384xf32>):
      %1 = graph.matmul %x_1, %w_1 : tensor<256x512xf32>, tensor<512x384xf32> -> tensor<256x384xf32>
      %2 = graph.add %1, %b_1 : tensor<256x384xf32>, tensor<384xf32> -> tensor<256x384xf32>
      %3 = graph.relu %2 : tensor<256x384xf32>
      graph.yield %3 : tensor<256x384xf32>
    }
    %1 = graph.kernel "row_0"(%0) {kind = "row"} : (tensor<256x384xf32, #graph.layout<[0, 1]>>) -> tensor<256x384xf32, #graph.layout<[0, 1]>> {
    ^bb0(%2: tensor<256x384xf32>):
      %3 = graph.softmax %2 {axis = 1 : i64} : tensor<256x384xf32>
      graph.yield %3 : tensor<256x384xf32>
    }
    func.return %1 : tensor<256x384xf32, #graph.layout<[0, 1]>>
  }
  func.func @pinned(%x: tensor<64x64xf32, #graph.layout<[0, 1]>> {graph.input = "x"}, %w: tensor<64x64xf32, #graph.layout<[0, 1]>> {graph.param = "w"}) -> tensor<64x64xf32, #graph.layout<[0, 1]>> {
    %0 = graph.kernel "gemm_1"(%x, %w) {tile_sizes = array<i64: 16, 32, 8>, loop_order = array<i64: 1, 0>, kind = "gemm"} : (tensor<64x64xf32, #graph.layout<[0, 1]>>, tensor<64x64xf32, #graph.layout<[0, 1]>>) -> tensor<64x64xf32, #graph.layout<[0, 1]>> {
    ^bb0(%x_1: tensor<64x64xf32>, %w_1: tensor<64x64xf32>):
      %1 = graph.matmul %x_1, %w_1 : tensor<64x64xf32>, tensor<64x64xf32> -> tensor<64x64xf32>
      graph.yield %1 : tensor<64x64xf32>
    }
    func.return %0 : tensor<64x64xf32, #graph.layout<[0, 1]>>
  }
}

// ---- defaults: `tile` on the device `--device` records; `tile{target=tpu}` (its default device) agrees.
// The TPU's GEMM tile starts at 128 in every dim (the MXU) and grows while it
// fits VMEM, to the whole 256x384 output (no operand is read twice); the
// softmax kernel keeps its whole extent (the softmax axis cannot be cut).
// Tiles already on a kernel are kept.

// CHECK-LABEL: func.func @t(
// CHECK:         graph.kernel "gemm_0"(%x, %w, %b) {tile_sizes = array<i64: 256, 384, 128>, loop_order = array<i64: 0, 1>, kind = "gemm"}
// CHECK:         graph.kernel "row_0"(%{{.*}}) {tile_sizes = array<i64: 256, 384>, loop_order = array<i64: 0, 1>, kind = "row"}
// CHECK-LABEL: func.func @pinned(
// CHECK:         graph.kernel "gemm_1"(%x, %w) {tile_sizes = array<i64: 16, 32, 8>, loop_order = array<i64: 1, 0>, kind = "gemm"}

// ---- gpu: the 128x128x64 CTA tile is halved along M until the on-chip tiles
// fit half of the 227 KiB of shared memory (64x128), then along its larger
// edge until the grid covers the 132 SMs (8 x 24 CTAs of 32x16); with more
// column tiles than row tiles, rows are the inner loop. The row kernel takes
// 32 whole rows.

// GPU-LABEL: func.func @t(
// GPU:         graph.kernel "gemm_0"({{.*}}) {tile_sizes = array<i64: 32, 16, 64>, loop_order = array<i64: 1, 0>, kind = "gemm"}
// GPU:         graph.kernel "row_0"({{.*}}) {tile_sizes = array<i64: 32, 384>, loop_order = array<i64: 0, 1>, kind = "row"}
// GPU-LABEL: func.func @pinned(
// GPU:         tile_sizes = array<i64: 16, 32, 8>, loop_order = array<i64: 1, 0>

// ---- lpu: 320-wide tiles, clamped to M; K takes the largest divisor of 512 up to 320.

// LPU-LABEL: func.func @t(
// LPU:         graph.kernel "gemm_0"({{.*}}) {tile_sizes = array<i64: 256, 320, 256>, loop_order = array<i64: 0, 1>, kind = "gemm"}

// ---- keep=false: the pinned kernel is retiled too.

// NOKEEP-LABEL: func.func @pinned(
// NOKEEP:         graph.kernel "gemm_1"(%x, %w) {tile_sizes = array<i64: 64, 64, 64>, loop_order = array<i64: 0, 1>, kind = "gemm"}

// ---- `sizes` (aligned to the innermost dims) and `order` pin every kernel they
// fit, the pinned one included. On the row kernel the sizes would cut the
// softmax axis: illegal, so it keeps its default tiles (only the order applies).

// SIZES-LABEL: func.func @t(
// SIZES:         graph.kernel "gemm_0"({{.*}}) {tile_sizes = array<i64: 64, 32, 128>, loop_order = array<i64: 1, 0>, kind = "gemm"}
// SIZES:         graph.kernel "row_0"({{.*}}) {tile_sizes = array<i64: 256, 384>, loop_order = array<i64: 1, 0>, kind = "row"}
// SIZES-LABEL: func.func @pinned(
// SIZES:         graph.kernel "gemm_1"({{.*}}) {tile_sizes = array<i64: 64, 32, 64>, loop_order = array<i64: 1, 0>, kind = "gemm"}

// The reduction tile must divide K: 48 becomes 32 (512 = 16 * 32, 64 = 2 * 32).
// KDIV-LABEL: func.func @t(
// KDIV:         graph.kernel "gemm_0"({{.*}}) {tile_sizes = array<i64: 64, 32, 32>, loop_order = array<i64: 0, 1>, kind = "gemm"}
// KDIV-LABEL: func.func @pinned(
// KDIV:         graph.kernel "gemm_1"({{.*}}) {tile_sizes = array<i64: 64, 32, 32>,

// A size of 0 keeps the whole dim.
// WHOLE-LABEL: func.func @t(
// WHOLE:         graph.kernel "gemm_0"({{.*}}) {tile_sizes = array<i64: 256, 384, 512>,
// WHOLE-LABEL: func.func @pinned(
// WHOLE:         graph.kernel "gemm_1"({{.*}}) {tile_sizes = array<i64: 64, 64, 64>,

// ---- lower-to-loops builds the nest the attributes describe.

// LOOPS-LABEL: func.func @t(
// LOOPS:         loop.kernel "gemm_0" {{.*}} attributes {kind = "gemm", bounds = array<i64: 256, 384, 512>, tile_sizes = array<i64: 256, 384, 128>, loop_order = array<i64: 0, 1>,
// LOOPS:         loop.kernel "row_0" {{.*}} attributes {kind = "row", bounds = array<i64: 256, 384>, tile_sizes = array<i64: 256, 384>,
// LOOPS-NOT:     scf.for
// LOOPS:         loop.end
// LOOPS-LABEL: func.func @pinned(
// LOOPS:         loop.kernel "gemm_1" {{.*}} tile_sizes = array<i64: 16, 32, 8>, loop_order = array<i64: 1, 0>,

// ---- errors (exit status 1). Bad option values and unknown options are
// rejected with the pipeline they came from, before any pass runs.

// ERR-SIZES:  error: bad pass pipeline 'tile{sizes=abc}': {{.*}}expected tuple[int, ...]
// ERR-OPTION: error: bad pass pipeline 'tile{size=64}': {{.*}}["size"] not found in expected arguments ["target", "sizes", "order", "keep", "threads"]

// An unknown target fails the pass.
// ERR-TARGET:      pass 'tile{target="npu"}' failed:
// ERR-TARGET-NEXT: unknown target 'npu'; expected one of gpu, tpu, lpu

// lower-to-loops needs the attributes `tile` writes; the reproducer replays the failure.
// ERR-UNTILED:      pass 'lower-to-loops' failed:
// ERR-UNTILED-NEXT: kernel 'gemm_0' has no tile_sizes/loop_order: run 'tile' before 'lower-to-loops'
// ERR-UNTILED-NEXT: reproducer written to {{.*}}/strata-reproducer-{{.*}}.mlir: strata opt {{.*}}/strata-reproducer-{{.*}}.mlir -p 'lower-to-loops'
