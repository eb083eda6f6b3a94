// lower-to-hardware on one loop-stage function with four kernels, for each
// target. The input is `strata compile m.model --emit loop` of
//
//   model m(x: f32[64, 32], xb: bf16[16, 32]) -> (f32[64, 16], bf16[16, 16]) {
//     param w1: f32[32, 48]
//     param w2: f32[48, 16]
//     param wb: bf16[32, 16]
//     h = x @ w1
//     return softmax(h @ w2, axis=-1), xb @ wb
//   }
//
// hand-edited: gemm_0 re-tiled to 32x16x8 (its loop nest as `tile{sizes=32,16,8}`
// gives it), gemm_1 given its own `dataflow = "is"` and a source location.
//
//   gemm_0  h = x @ w1    f32   M=64 N=48 K=32, tiles 32x16x8: 2 x 3 output tiles, 4 K steps
//   gemm_1  y = h @ w2    f32   M=64 N=16 K=48, one tile, 1 K step, pinned dataflow "is"
//   row_0   softmax(y)    f32   64x16, one tile, no matrix work
//   gemm_2  xb @ wb       bf16  M=16 N=16 K=32, one tile (f32 accumulator)

// The device comes from the module's dlti.target_system_spec, else the target option's default (gpu: h100).
// RUN: strata opt %s -p 'lower-to-hardware' --no-debuginfo | filecheck %s --check-prefix=GPU
// RUN: strata opt %s -p 'lower-to-hardware{target=gpu}' --no-debuginfo | strata opt - --no-debuginfo | filecheck %s --check-prefix=GPU
// RUN: strata opt %s -p 'lower-to-hardware{target=tpu}' --no-debuginfo | filecheck %s --check-prefix=TPU
// RUN: strata opt %s -p 'assign-dataflow{target=tpu dataflow=os},lower-to-hardware{target=tpu}' --no-debuginfo | filecheck %s --check-prefix=TPUOS
// RUN: strata opt %s -p 'place-chips{target=lpu},lower-to-hardware' --no-debuginfo | filecheck %s --check-prefix=LPU
// RUN: strata opt %s -p 'place-chips{target=lpu chips=2},lower-to-hardware' --no-debuginfo | strata opt - --no-debuginfo | filecheck %s --check-prefix=LPU2
// The chip count can also come from the module's strata.chips attribute; the option wins over it.
// RUN: sed 's/^builtin.module {/builtin.module attributes {strata.chips = 2 : i64} {/' %s | strata opt - -p 'place-chips{target=lpu},lower-to-hardware' --no-debuginfo | filecheck %s --check-prefix=LPU2
// RUN: sed 's/^builtin.module {/builtin.module attributes {strata.chips = 2 : i64} {/' %s | strata opt - -p 'place-chips{target=lpu chips=1},lower-to-hardware' --no-debuginfo | filecheck %s --check-prefix=LPU
// Lowered ops (and the transfer feeding a kernel) keep the kernel's locations.
// RUN: strata opt %s -p 'place-chips{target=lpu chips=2},lower-to-hardware' | filecheck %s --check-prefix=LOC

builtin.module {
  func.func @m(%x: memref<64x32xf32, #graph.layout<[0, 1]>, "global"> {graph.input = "x"}, %xb: memref<16x32xbf16, #graph.layout<[0, 1]>, "global"> {graph.input = "xb"}, %w1: memref<32x48xf32, #graph.layout<[0, 1]>, "global"> {graph.param = "w1"}, %w2: memref<48x16xf32, #graph.layout<[0, 1]>, "global"> {graph.param = "w2"}, %wb: memref<32x16xbf16, #graph.layout<[0, 1]>, "global"> {graph.param = "wb"}) -> (memref<64x16xf32, #graph.layout<[0, 1]>, "global">, memref<16x16xbf16, #graph.layout<[0, 1]>, "global">) {
    %0 = memref.alloc() : memref<64x48xf32, #graph.layout<[0, 1]>, "global">
    loop.kernel "gemm_0" ins(%x, %w1 : memref<64x32xf32, #graph.layout<[0, 1]>, "global">, memref<32x48xf32, #graph.layout<[0, 1]>, "global">) outs(%0 : memref<64x48xf32, #graph.layout<[0, 1]>, "global">) attributes {kind = "gemm", bounds = array<i64: 64, 48, 32>, tile_sizes = array<i64: 32, 16, 8>, loop_order = array<i64: 0, 1>, ops = ["graph.matmul"]} {
    ^bb0(%1: memref<64x32xf32, #graph.layout<[0, 1]>, "global">, %2: memref<32x48xf32, #graph.layout<[0, 1]>, "global">, %3: memref<64x48xf32, #graph.layout<[0, 1]>, "global">):
      %4 = arith.constant 0 : index
      %5 = arith.constant 0 : index
      %6 = arith.constant 64 : index
      %7 = arith.constant 32 : index
      scf.for %8 = %5 to %6 step %7 {
        %9 = arith.constant 0 : index
        %10 = arith.constant 48 : index
        %11 = arith.constant 16 : index
        scf.for %12 = %9 to %10 step %11 {
          %13 = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<32x16xf32>
          %14 = arith.constant 0 : index
          %15 = arith.constant 32 : index
          %16 = arith.constant 8 : index
          %17 = scf.for %18 = %14 to %15 step %16 iter_args(%19 = %13) -> (tensor<32x16xf32>) {
            %20 = loop.load %1[%8, %12, %18] {map = affine_map<(d0, d1, d2) -> (d0, d2)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<64x32xf32, #graph.layout<[0, 1]>, "global"> -> tensor<32x8xf32>
            %21 = loop.load %2[%8, %12, %18] {map = affine_map<(d0, d1, d2) -> (d2, d1)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<32x48xf32, #graph.layout<[0, 1]>, "global"> -> tensor<8x16xf32>
            %22 = graph.matmul %20, %21 : tensor<32x8xf32>, tensor<8x16xf32> -> tensor<32x16xf32>
            %23 = graph.add %19, %22 : tensor<32x16xf32>, tensor<32x16xf32> -> tensor<32x16xf32>
            scf.yield %23 : tensor<32x16xf32>
          } {loop.dim = 2 : i64}
          loop.store %17, %3[%8, %12, %4] {map = affine_map<(d0, d1, d2) -> (d0, d1)>} : tensor<32x16xf32> -> memref<64x48xf32, #graph.layout<[0, 1]>, "global">
        } {loop.dim = 1 : i64}
      } {loop.dim = 0 : i64}
      loop.end
    }
    %1 = memref.alloc() : memref<64x16xf32, #graph.layout<[0, 1]>, "global">
    loop.kernel "gemm_1" ins(%0, %w2 : memref<64x48xf32, #graph.layout<[0, 1]>, "global">, memref<48x16xf32, #graph.layout<[0, 1]>, "global">) outs(%1 : memref<64x16xf32, #graph.layout<[0, 1]>, "global">) attributes {dataflow = "is", kind = "gemm", bounds = array<i64: 64, 16, 48>, tile_sizes = array<i64: 64, 16, 48>, loop_order = array<i64: 0, 1>, ops = ["graph.matmul"]} {
    ^bb0(%2: memref<64x48xf32, #graph.layout<[0, 1]>, "global">, %3: memref<48x16xf32, #graph.layout<[0, 1]>, "global">, %4: memref<64x16xf32, #graph.layout<[0, 1]>, "global">):
      %5 = arith.constant 0 : index
      %6 = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<64x16xf32>
      %7 = arith.constant 0 : index
      %8 = arith.constant 48 : index
      %9 = arith.constant 48 : index
      %10 = scf.for %11 = %7 to %8 step %9 iter_args(%12 = %6) -> (tensor<64x16xf32>) {
        %13 = loop.load %2[%5, %5, %11] {map = affine_map<(d0, d1, d2) -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<64x48xf32, #graph.layout<[0, 1]>, "global"> -> tensor<64x48xf32>
        %14 = loop.load %3[%5, %5, %11] {map = affine_map<(d0, d1, d2) -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<48x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<48x16xf32>
        %15 = graph.matmul %13, %14 : tensor<64x48xf32>, tensor<48x16xf32> -> tensor<64x16xf32> loc("m.model":6:18)
        %16 = graph.add %12, %15 : tensor<64x16xf32>, tensor<64x16xf32> -> tensor<64x16xf32>
        scf.yield %16 : tensor<64x16xf32>
      } {loop.dim = 2 : i64}
      loop.store %10, %4[%5, %5, %5] {map = affine_map<(d0, d1, d2) -> (0, 0)>} : tensor<64x16xf32> -> memref<64x16xf32, #graph.layout<[0, 1]>, "global">
      loop.end
    } loc("m.model":6:18)
    %2 = memref.alloc() : memref<64x16xf32, #graph.layout<[0, 1]>, "global">
    loop.kernel "row_0" ins(%1 : memref<64x16xf32, #graph.layout<[0, 1]>, "global">) outs(%2 : memref<64x16xf32, #graph.layout<[0, 1]>, "global">) attributes {kind = "row", bounds = array<i64: 64, 16>, tile_sizes = array<i64: 64, 16>, loop_order = array<i64: 0, 1>, ops = ["graph.softmax"]} {
    ^bb0(%3: memref<64x16xf32, #graph.layout<[0, 1]>, "global">, %4: memref<64x16xf32, #graph.layout<[0, 1]>, "global">):
      %5 = arith.constant 0 : index
      %6 = loop.load %3[%5, %5] {map = affine_map<(d0, d1) -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<64x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<64x16xf32>
      %7 = graph.softmax %6 {axis = 1 : i64} : tensor<64x16xf32>
      loop.store %7, %4[%5, %5] {map = affine_map<(d0, d1) -> (0, 0)>} : tensor<64x16xf32> -> memref<64x16xf32, #graph.layout<[0, 1]>, "global">
      loop.end
    }
    %3 = memref.alloc() : memref<16x16xbf16, #graph.layout<[0, 1]>, "global">
    loop.kernel "gemm_2" ins(%xb, %wb : memref<16x32xbf16, #graph.layout<[0, 1]>, "global">, memref<32x16xbf16, #graph.layout<[0, 1]>, "global">) outs(%3 : memref<16x16xbf16, #graph.layout<[0, 1]>, "global">) attributes {kind = "gemm", bounds = array<i64: 16, 16, 32>, tile_sizes = array<i64: 16, 16, 32>, loop_order = array<i64: 0, 1>, ops = ["graph.matmul"]} {
    ^bb0(%4: memref<16x32xbf16, #graph.layout<[0, 1]>, "global">, %5: memref<32x16xbf16, #graph.layout<[0, 1]>, "global">, %6: memref<16x16xbf16, #graph.layout<[0, 1]>, "global">):
      %7 = arith.constant 0 : index
      %8 = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<16x16xf32>
      %9 = arith.constant 0 : index
      %10 = arith.constant 32 : index
      %11 = arith.constant 32 : index
      %12 = scf.for %13 = %9 to %10 step %11 iter_args(%14 = %8) -> (tensor<16x16xf32>) {
        %15 = loop.load %4[%7, %7, %13] {map = affine_map<(d0, d1, d2) -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x32xbf16, #graph.layout<[0, 1]>, "global"> -> tensor<16x32xbf16>
        %16 = graph.cast %15 : tensor<16x32xbf16> -> tensor<16x32xf32>
        %17 = loop.load %5[%7, %7, %13] {map = affine_map<(d0, d1, d2) -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<32x16xbf16, #graph.layout<[0, 1]>, "global"> -> tensor<32x16xbf16>
        %18 = graph.cast %17 : tensor<32x16xbf16> -> tensor<32x16xf32>
        %19 = graph.matmul %16, %18 : tensor<16x32xf32>, tensor<32x16xf32> -> tensor<16x16xf32> loc("m.model":8:10)
        %20 = graph.add %14, %19 : tensor<16x16xf32>, tensor<16x16xf32> -> tensor<16x16xf32>
        scf.yield %20 : tensor<16x16xf32>
      } {loop.dim = 2 : i64}
      %21 = graph.cast %12 : tensor<16x16xf32> -> tensor<16x16xbf16>
      loop.store %21, %6[%7, %7, %7] {map = affine_map<(d0, d1, d2) -> (0, 0)>} : tensor<16x16xbf16> -> memref<16x16xbf16, #graph.layout<[0, 1]>, "global">
      loop.end
    } loc("m.model":8:10)
    func.return %2, %3 : memref<64x16xf32, #graph.layout<[0, 1]>, "global">, memref<16x16xbf16, #graph.layout<[0, 1]>, "global">
  }
}

// ---------------------------------------------------------------------------
// Figures shared by every target (passes/_figures.py), computed by hand.
//
// gemm_0: 2 (M) x 3 (N) output tiles, each with a K loop of 32/8 = 4 steps:
//   24 iterations of the K-loop body, 6 tile stores.
//   flops        = matmul 2*32*16*8 = 8192 per step * 24 = 196608 (= 2*64*48*32);
//                  the `acc + product` add is the MMA's own accumulation, not counted again
//   matrix_flops = 196608
//   read_bytes   = (x tile 32x8 + w1 tile 8x16) * 4 B = 1536 per step * 24 = 36864
//                  (x, 8192 B, read once per N tile = 3 times; w1, 6144 B, once per M tile = 2 times)
//   write_bytes  = 32x16 * 4 B = 2048 per tile * 6 = 12288 (= 64*48*4, written once)
//   onchip_bytes = x tile 1024 + w1 tile 512 = 1536, both loaded inside the K loop
//                  ("pipelined"); the f32 accumulator, 32x16*4 = 2048 B, is register bytes
//   gemms        = [1, 64, 48, 32]
// gemm_1: one tile, one K step of 48.
//   flops = matrix flops = 2*64*16*48 = 98304
//   read  = h 64x48*4 = 12288 + w2 48x16*4 = 3072 -> 15360; write = 64*16*4 = 4096
//   onchip = 15360 (all pipelined); accumulator 64*16*4 = 4096 register bytes
// row_0: softmax counts 5 flops per element: 5*64*16 = 5120; no matrix work;
//   read = write = onchip = 64*16*4 = 4096; a "row" kernel issues no GEMM: gemms = [].
// gemm_2: bf16 operands (2 B), cast to f32 on chip (casts count no flops).
//   flops = matrix flops = 2*16*16*32 = 16384
//   read = (16x32 + 32x16) * 2 B = 2048; write = 16x16 * 2 B = 512
//   onchip = 2048 (all pipelined); f32 accumulator 16*16*4 = 1024 register bytes

// ---------------------------------------------------------------------------
// GPU (simt). grid = CTAs per parallel tile loop, innermost (x) first;
// threads = output-tile elements / 64 accumulators per thread (GEMM) or / 8
// elements (others), rounded up to whole warps; stages = min(3, K steps) (copy pipeline)
// when loads sit in a reduction loop, else 1; smem = unpipelined bytes +
// stages * pipelined bytes; regs = f32 accumulators (or, without any, output
// tile elements) / threads + 32; mma from the output element type
// (targets.toml: f32 m16n8k8, bf16 m16n8k16).
//
// gemm_0: grid [48/16 = 3, 64/32 = 2, 1]; 32*16 = 512 elements / 64 = 8 -> one
//   warp, 32 threads; K loop of 4 steps -> stages 3; smem = 0 unpipelined +
//   3*1536 = 4608; regs = 2048/4 = 512 accumulators / 32 + 32 = 48.
// GPU-LABEL: builtin.module attributes {dlti.target_system_spec = #dlti.target_system_spec<"gpu" = #dlti.target_device_spec<"name" = "h100", "target" = "gpu",
// GPU:       %0 = memref.alloc() : memref<64x48xf32
// GPU-NEXT:  simt.kernel "gemm_0" ins(%x, %w1 : {{.*}}) outs(%0 : {{.*}}) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 64, 48, 32>, tile_sizes = array<i64: 32, 16, 8>, loop_order = array<i64: 0, 1>,
// GPU-SAME:  flops = 196608 : i64, matrix_flops = 196608 : i64, read_bytes = 36864 : i64, write_bytes = 12288 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 64, 48, 32>],
// GPU-SAME:  grid = array<i64: 3, 2, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 48 : i64, mma = array<i64: 16, 8, 8>} {
// GPU-NOT:   {{graph.matmul|loop.end}}
// GPU:       simt.mma %{{[0-9]+}}, %{{[0-9]+}} {shape = array<i64: 16, 8, 8>} : tensor<32x8xf32>, tensor<8x16xf32> -> tensor<32x16xf32>
// GPU-NOT:   {{graph.matmul|loop.end}}
// GPU:       simt.end
// GPU-NEXT:  }
//
// gemm_1: 64*16 = 1024 elements / 64 = 16 -> 32 threads; its K loop has a
//   single step, so one stage: smem = 15360; regs = 1024/32 + 32 = 64. Its
//   `dataflow` attribute means nothing on this target.
// GPU-NOT:   loop.kernel
// GPU:       simt.kernel "gemm_1" ins(%0, %w2 : {{.*}}) outs(%1 : {{.*}}) attributes {kind = "gemm",
// GPU-SAME:  flops = 98304 : i64, matrix_flops = 98304 : i64, read_bytes = 15360 : i64, write_bytes = 4096 : i64, onchip_bytes = 15360 : i64, gemms = [array<i64: 1, 64, 16, 48>],
// GPU-SAME:  grid = array<i64: 1, 1, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 15360 : i64, stages = 1 : i64, regs_per_thread = 64 : i64, mma = array<i64: 16, 8, 8>} {
// GPU-NOT:   {{graph.matmul|loop.end}}
// GPU:       simt.mma {{.*}} : tensor<64x48xf32>, tensor<48x16xf32> -> tensor<64x16xf32>
// GPU-NOT:   {{graph.matmul|loop.end}}
// GPU:       simt.end
//
// row_0: no reduction loop -> stages 1, smem = onchip = 4096; 1024 elements / 8
//   per thread = 128 threads; no accumulator: regs = 1024 tile elements / 128 + 32
//   = 40; no matrix work -> mma empty.
// GPU:       simt.kernel "row_0" ins(%1 : {{.*}}) outs(%2 : {{.*}}) attributes {kind = "row", ops = ["graph.softmax"], bounds = array<i64: 64, 16>, tile_sizes = array<i64: 64, 16>, loop_order = array<i64: 0, 1>,
// GPU-SAME:  flops = 5120 : i64, matrix_flops = 0 : i64, read_bytes = 4096 : i64, write_bytes = 4096 : i64, onchip_bytes = 4096 : i64, gemms = [],
// GPU-SAME:  grid = array<i64: 1, 1, 1>, block = array<i64: 128, 1, 1>, smem_bytes = 4096 : i64, stages = 1 : i64, regs_per_thread = 40 : i64, mma = array<i64>} {
// GPU-NOT:   simt.mma
// GPU:       graph.softmax
// GPU-NEXT:  loop.store
// GPU-NEXT:  simt.end
//
// gemm_2 (bf16 output): mma m16n8k16; 256 elements -> 32 threads; one K
//   step, one stage: smem = 2048; regs = 1024/4 = 256 accumulators / 32 + 32 = 40.
// GPU:       simt.kernel "gemm_2" ins(%xb, %wb : {{.*}}) outs(%3 : {{.*}}) attributes {kind = "gemm",
// GPU-SAME:  flops = 16384 : i64, matrix_flops = 16384 : i64, read_bytes = 2048 : i64, write_bytes = 512 : i64, onchip_bytes = 2048 : i64, gemms = [array<i64: 1, 16, 16, 32>],
// GPU-SAME:  grid = array<i64: 1, 1, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 2048 : i64, stages = 1 : i64, regs_per_thread = 40 : i64, mma = array<i64: 16, 8, 16>} {
// GPU-NOT:   {{graph.matmul|loop.end}}
// GPU:       simt.mma {{.*}} {shape = array<i64: 16, 8, 16>} : tensor<16x32xf32>, tensor<32x16xf32> -> tensor<16x16xf32>
// GPU-NOT:   {{graph.matmul|loop.end}}
// GPU:       simt.end
// GPU-NOT:   {{loop.kernel|loop.end|graph.matmul}}
// GPU:       func.return %2, %3

// ---------------------------------------------------------------------------
// TPU (systolic). DMA in/out = read/write bytes, VMEM = on-chip + accumulator
// (register) bytes, vector work = flops - matrix flops. Dataflow: the kernel's
// own attribute, else the pass option, else targets.toml's default "ws".
// TPU-LABEL: builtin.module attributes {dlti.target_system_spec = #dlti.target_system_spec<"tpu" = #dlti.target_device_spec<"name" = "tpu-v4", "target" = "tpu",
// TPU:       systolic.program "gemm_0" ins(%x, %w1 : {{.*}}) outs(%0 : {{.*}}) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 64, 48, 32>, tile_sizes = array<i64: 32, 16, 8>, loop_order = array<i64: 0, 1>,
// TPU-SAME:  flops = 196608 : i64, matrix_flops = 196608 : i64, read_bytes = 36864 : i64, write_bytes = 12288 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 64, 48, 32>],
// TPU-SAME:  dataflow = "ws", dma_in_bytes = 36864 : i64, dma_out_bytes = 12288 : i64, vmem_bytes = 3584 : i64, vector_flops = 0 : i64} {
// TPU-NOT:   {{graph.matmul|loop.end}}
// TPU:       systolic.matmul %{{[0-9]+}}, %{{[0-9]+}} {dataflow = "ws"} : tensor<32x8xf32>, tensor<8x16xf32> -> tensor<32x16xf32>
// TPU-NOT:   {{graph.matmul|loop.end}}
// TPU:       systolic.end
// gemm_1 keeps its pinned "is"; vmem = 15360 + 4096.
// TPU:       systolic.program "gemm_1" {{.*}} gemms = [array<i64: 1, 64, 16, 48>], dataflow = "is", dma_in_bytes = 15360 : i64, dma_out_bytes = 4096 : i64, vmem_bytes = 19456 : i64, vector_flops = 0 : i64} {
// TPU:       systolic.matmul {{.*}} {dataflow = "is"}
// TPU:       systolic.end
// TPU:       systolic.program "row_0" {{.*}} gemms = [], dataflow = "ws", dma_in_bytes = 4096 : i64, dma_out_bytes = 4096 : i64, vmem_bytes = 4096 : i64, vector_flops = 5120 : i64} {
// TPU:       systolic.program "gemm_2" {{.*}} gemms = [array<i64: 1, 16, 16, 32>], dataflow = "ws", dma_in_bytes = 2048 : i64, dma_out_bytes = 512 : i64, vmem_bytes = 3072 : i64, vector_flops = 0 : i64} {
// TPU:       systolic.matmul {{.*}} {dataflow = "ws"}
// TPU-NOT:   {{loop.kernel|loop.end|graph.matmul}}
// TPU:       func.return

// assign-dataflow{dataflow=os} applies to every matrix kernel without its own
// attribute; a kernel with no GEMM keeps the device's (it never uses the arrays).
// TPUOS:     systolic.program "gemm_0" {{.*}} dataflow = "os",
// TPUOS:     systolic.matmul {{.*}} {dataflow = "os"}
// TPUOS:     systolic.program "gemm_1" {{.*}} dataflow = "is",
// TPUOS:     systolic.matmul {{.*}} {dataflow = "is"}
// TPUOS:     systolic.program "row_0" {{.*}} dataflow = "ws",
// TPUOS:     systolic.program "gemm_2" {{.*}} dataflow = "os",
// TPUOS:     systolic.matmul {{.*}} {dataflow = "os"}

// ---------------------------------------------------------------------------
// LPU (tsp), one chip: every weight (w1 6144 B, w2 3072 B, wb 1024 B) fits its
// 220 MiB SRAM, so all kernels sit on chip 0 in program order (slots 0..3).
// weight_bytes = the params a kernel reads; stream_bytes = read_bytes minus
// the bytes read from params, plus write_bytes:
//   gemm_0: w1 is read 2 times (once per M tile): 36864 - 2*6144 + 12288 = 36864
//   gemm_1: 15360 - 3072 + 4096 = 16384;  row_0: 4096 + 4096 = 8192
//   gemm_2: 2048 - 1024 + 512 = 1536
// Units: mem always; mxm for matrix work, vxm for other arithmetic (row_0's
// softmax; a GEMM's accumulation belongs to the MXM), sxm for data movement
// (gemm_2's casts).
// LPU-LABEL: builtin.module attributes {
// LPU-SAME:   strata.chips = 1 : i64
// LPU-NOT:   tsp.transfer
// LPU:       tsp.program "gemm_0" ins(%x, %w1 : {{.*}}) outs(%0 : {{.*}}) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 64, 48, 32>, tile_sizes = array<i64: 32, 16, 8>, loop_order = array<i64: 0, 1>,
// LPU-SAME:  flops = 196608 : i64, matrix_flops = 196608 : i64, read_bytes = 36864 : i64, write_bytes = 12288 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 64, 48, 32>],
// LPU-SAME:  chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "mxm"], weight_bytes = 6144 : i64, stream_bytes = 36864 : i64} {
// LPU-NOT:   {{graph.matmul|loop.end}}
// LPU:       tsp.mxm %{{[0-9]+}}, %{{[0-9]+}} : tensor<32x8xf32>, tensor<8x16xf32> -> tensor<32x16xf32>
// LPU-NOT:   {{graph.matmul|loop.end}}
// LPU:       tsp.end
// LPU-NOT:   tsp.transfer
// LPU:       tsp.program "gemm_1" ins(%0, %w2 : {{.*}} chip = 0 : i64, shards = 1 : i64, slot = 1 : i64, units = ["mem", "mxm"], weight_bytes = 3072 : i64, stream_bytes = 16384 : i64} {
// LPU:       tsp.program "row_0" ins(%1 : {{.*}} chip = 0 : i64, shards = 1 : i64, slot = 2 : i64, units = ["mem", "vxm"], weight_bytes = 0 : i64, stream_bytes = 8192 : i64} {
// LPU:       tsp.program "gemm_2" ins(%xb, %wb : {{.*}} chip = 0 : i64, shards = 1 : i64, slot = 3 : i64, units = ["mem", "mxm", "sxm"], weight_bytes = 1024 : i64, stream_bytes = 1536 : i64} {
// LPU-NOT:   {{tsp.transfer|loop.kernel|graph.matmul}}
// LPU:       func.return

// LPU, two chips: two runs of kernels, cut where the fewest bytes cross.
// After gemm_0 the 12 KiB h would cross, after gemm_1 the 4 KiB y, after
// row_0 only the function input xb (1 KiB), which every cut crosses since
// inputs arrive on chip 0 and gemm_2 reads it: so gemm_0, gemm_1 and row_0
// share chip 0 (9216 B of weights) and gemm_2 takes chip 1. A buffer read
// on a chip other than where it was produced is moved by a tsp.transfer
// into a fresh buffer, with the consumer's location, and the consumer reads
// that copy.
// LPU2-LABEL: builtin.module attributes {
// LPU2-SAME:   strata.chips = 2 : i64
// LPU2:       %[[H:[0-9]+]] = memref.alloc() : memref<64x48xf32
// LPU2-NEXT:  tsp.program "gemm_0" ins(%x, %w1 : {{.*}}) outs(%[[H]] : {{.*}} chip = 0 : i64, shards = 1 : i64, slot = 0 : i64,
// LPU2:       %[[Y:[0-9]+]] = memref.alloc() : memref<64x16xf32
// LPU2-NEXT:  tsp.program "gemm_1" ins(%[[H]], %w2 : {{.*}}) outs(%[[Y]] : {{.*}} chip = 0 : i64, shards = 1 : i64, slot = 1 : i64, units = ["mem", "mxm"], weight_bytes = 3072 : i64, stream_bytes = 16384 : i64} {
// LPU2:       tsp.end
// LPU2-NEXT:  }
// LPU2-NEXT:  %{{[0-9]+}} = memref.alloc() : memref<64x16xf32
// LPU2-NEXT:  tsp.program "row_0" ins(%[[Y]] : {{.*}} chip = 0 : i64, shards = 1 : i64, slot = 2 : i64,
// LPU2:       %[[XBMOVED:[0-9]+]] = memref.alloc() : memref<16x32xbf16
// LPU2-NEXT:  tsp.transfer %xb, %[[XBMOVED]] {from_chip = 0 : i64, to_chip = 1 : i64}
// LPU2-NEXT:  tsp.program "gemm_2" ins(%[[XBMOVED]], %wb : {{.*}} chip = 1 : i64, shards = 1 : i64, slot = 0 : i64,
// LPU2-NOT:   tsp.transfer
// LPU2:       func.return

// LOC:       memref.alloc() {{.*}} loc("m.model":8:10)
// LOC-NEXT:  tsp.transfer {{.*}} loc("m.model":8:10)
// LOC-NEXT:  tsp.program "gemm_2"
// LOC:       tsp.mxm {{.*}} loc("m.model":8:10)
// LOC:       } loc("m.model":8:10)
