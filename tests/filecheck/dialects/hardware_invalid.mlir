// Every verifier error of the hardware dialects (simt, systolic, tsp), one
// module per case: each RUN line cuts one case out of this file (from its
// `// ----- NAME` line to the next) and checks the exact message.
// RUN: sed -n '/^\/\/ ----- block-warps$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=WARPS
// RUN: sed -n '/^\/\/ ----- block-threads$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=THREADS
// RUN: sed -n '/^\/\/ ----- grid-zero$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=GRID
// RUN: sed -n '/^\/\/ ----- kernel-mma$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=KMMA
// RUN: sed -n '/^\/\/ ----- mma-shape$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=MMA
// RUN: sed -n '/^\/\/ ----- mma-result$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=MMARES
// RUN: sed -n '/^\/\/ ----- dataflow$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=DATAFLOW
// RUN: sed -n '/^\/\/ ----- matmul-dataflow$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=MMDATAFLOW
// RUN: sed -n '/^\/\/ ----- dma-in$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=DMAIN
// RUN: sed -n '/^\/\/ ----- dma-out$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=DMAOUT
// RUN: sed -n '/^\/\/ ----- same-chip$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=SAMECHIP
// RUN: sed -n '/^\/\/ ----- negative-chip$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=NEGCHIP
// RUN: sed -n '/^\/\/ ----- unit$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=UNIT
// RUN: sed -n '/^\/\/ ----- shards$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=SHARDS
// RUN: sed -n '/^\/\/ ----- tiles$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=TILES
// RUN: sed -n '/^\/\/ ----- gemms$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=GEMMS
// RUN: sed -n '/^\/\/ ----- figure$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=FIGURE
// RUN: sed -n '/^\/\/ ----- block-args$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=ARGS

// ----- block-warps
// simt.kernel: 48 threads are not a whole number of 32-thread warps.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], grid = array<i64: 1, 1, 1>, block = array<i64: 48, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8, 8>} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      simt.end
    } loc("bad.model":3:5)
    func.return
  }
}
// WARPS: bad.model:3:5: error: 'simt.kernel' op failed to verify: 'simt.kernel' block [48, 1, 1] must hold a whole number of 32-thread warps, at most 1024 threads

// ----- block-threads
// simt.kernel: 64 x 32 = 2048 threads, whole warps but over the 1024-thread limit.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], grid = array<i64: 1, 1, 1>, block = array<i64: 64, 32, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8, 8>} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      simt.end
    } loc("bad.model":3:5)
    func.return
  }
}
// THREADS: bad.model:3:5: error: 'simt.kernel' op failed to verify: 'simt.kernel' block [64, 32, 1] must hold a whole number of 32-thread warps, at most 1024 threads

// ----- grid-zero
// simt.kernel: a grid extent of zero.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], grid = array<i64: 2, 0, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8, 8>} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      simt.end
    } loc("bad.model":3:5)
    func.return
  }
}
// GRID: bad.model:3:5: error: 'simt.kernel' op failed to verify: 'simt.kernel' grid must be 3 positive extents, got [2, 0, 1]

// ----- kernel-mma
// simt.kernel: an MMA shape of 2 entries (it is [m, n, k] or empty).
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], grid = array<i64: 1, 1, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8>} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      simt.end
    } loc("bad.model":3:5)
    func.return
  }
}
// KMMA: bad.model:3:5: error: 'simt.kernel' op failed to verify: 'simt.kernel' mma is [m, n, k] of positive extents or empty, got [16, 8]

// ----- mma-shape
// simt.mma: an instruction shape of 2 entries.
builtin.module {
  func.func @k(%a: tensor<8x16xf32>, %b: tensor<16x16xf32>) -> tensor<8x16xf32> {
    %c = simt.mma %a, %b {shape = array<i64: 16, 8>} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32> loc("bad.model":4:10)
    func.return %c : tensor<8x16xf32>
  }
}
// MMA: bad.model:4:10: error: 'simt.mma' op failed to verify: 'simt.mma' shape is [m, n, k]

// ----- mma-result
// simt.mma: 8x16 @ 16x16 is 8x16, not the declared 8x8.
builtin.module {
  func.func @k(%a: tensor<8x16xf32>, %b: tensor<16x16xf32>) -> tensor<8x8xf32> {
    %c = simt.mma %a, %b {shape = array<i64: 16, 8, 8>} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x8xf32> loc("bad.model":4:10)
    func.return %c : tensor<8x8xf32>
  }
}
// MMARES: bad.model:4:10: error: 'simt.mma' op failed to verify: 'simt.mma' result shape must be [8, 16]

// ----- dataflow
// systolic.program: "xs" is none of os, ws, is.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    systolic.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], dataflow = "xs", dma_in_bytes = 1536 : i64, dma_out_bytes = 512 : i64, vmem_bytes = 1536 : i64, vector_flops = 0 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      systolic.end
    } loc("bad.model":3:5)
    func.return
  }
}
// DATAFLOW: bad.model:3:5: error: 'systolic.program' op failed to verify: 'systolic.program' dataflow must be one of ws, os, is, got 'xs'

// ----- matmul-dataflow
// systolic.matmul: the same check on the matrix op.
builtin.module {
  func.func @k(%a: tensor<8x16xf32>, %b: tensor<16x16xf32>) -> tensor<8x16xf32> {
    %c = systolic.matmul %a, %b {dataflow = "xs"} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32> loc("bad.model":4:10)
    func.return %c : tensor<8x16xf32>
  }
}
// MMDATAFLOW: bad.model:4:10: error: 'systolic.matmul' op failed to verify: 'systolic.matmul' dataflow must be one of ws, os, is, got 'xs'

// ----- dma-in
// systolic.program: dma_in_bytes 1024 but read_bytes 1536.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    systolic.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], dataflow = "ws", dma_in_bytes = 1024 : i64, dma_out_bytes = 512 : i64, vmem_bytes = 1536 : i64, vector_flops = 0 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      systolic.end
    } loc("bad.model":3:5)
    func.return
  }
}
// DMAIN: bad.model:3:5: error: 'systolic.program' op failed to verify: 'systolic.program' dma_in_bytes must equal read_bytes

// ----- dma-out
// systolic.program: dma_out_bytes 0 but write_bytes 512.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    systolic.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], dataflow = "ws", dma_in_bytes = 1536 : i64, dma_out_bytes = 0 : i64, vmem_bytes = 1536 : i64, vector_flops = 0 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      systolic.end
    } loc("bad.model":3:5)
    func.return
  }
}
// DMAOUT: bad.model:3:5: error: 'systolic.program' op failed to verify: 'systolic.program' dma_out_bytes must equal write_bytes

// ----- same-chip
// tsp.transfer: from chip 1 to chip 1.
builtin.module {
  func.func @k(%a: memref<8x16xf32, "global">, %b: memref<8x16xf32, "global">) {
    tsp.transfer %a, %b {from_chip = 1 : i64, to_chip = 1 : i64} : memref<8x16xf32, "global"> loc("bad.model":5:3)
    func.return
  }
}
// SAMECHIP: bad.model:5:3: error: 'tsp.transfer' op failed to verify: 'tsp.transfer' moves between two different chips

// ----- negative-chip
// tsp.transfer: chip -1.
builtin.module {
  func.func @k(%a: memref<8x16xf32, "global">, %b: memref<8x16xf32, "global">) {
    tsp.transfer %a, %b {from_chip = 0 : i64, to_chip = -1 : i64} : memref<8x16xf32, "global"> loc("bad.model":5:3)
    func.return
  }
}
// NEGCHIP: bad.model:5:3: error: 'tsp.transfer' op failed to verify: 'tsp.transfer' chips are numbered from 0

// ----- unit
// tsp.program: "tpu" is not a functional unit.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    tsp.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "tpu"], weight_bytes = 1024 : i64, stream_bytes = 1024 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      tsp.end
    } loc("bad.model":3:5)
    func.return
  }
}
// UNIT: bad.model:3:5: error: 'tsp.program' op failed to verify: 'tsp.program' unknown units ['tpu'] (units: mxm, vxm, sxm, mem)

// ----- shards
// tsp.program: shards = 0.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    tsp.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], chip = 0 : i64, shards = 0 : i64, slot = 0 : i64, units = ["mem", "mxm"], weight_bytes = 1024 : i64, stream_bytes = 1024 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      tsp.end
    } loc("bad.model":3:5)
    func.return
  }
}
// SHARDS: bad.model:3:5: error: 'tsp.program' op failed to verify: 'tsp.program' needs chip >= 0, slot >= 0 and shards >= 1

// ----- tiles
// any hardware kernel: a tile of 32 along a bound of 16.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 32, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], grid = array<i64: 1, 1, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8, 8>} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      simt.end
    } loc("bad.model":3:5)
    func.return
  }
}
// TILES: bad.model:3:5: error: 'simt.kernel' op failed to verify: 'simt.kernel' tile sizes [8, 32, 16] must be in 1..bounds [8, 16, 16]

// ----- gemms
// any hardware kernel: a gemms entry of 3 numbers (it is [count, M, N, K]).
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    tsp.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16>], chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "mxm"], weight_bytes = 1024 : i64, stream_bytes = 1024 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      tsp.end
    } loc("bad.model":3:5)
    func.return
  }
}
// GEMMS: bad.model:3:5: error: 'tsp.program' op failed to verify: 'tsp.program' gemms entries are [count, M, N, K] > 0, got [1, 8, 16]

// ----- figure
// any hardware kernel: a negative figure.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    systolic.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = -512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], dataflow = "ws", dma_in_bytes = 1536 : i64, dma_out_bytes = 512 : i64, vmem_bytes = 1536 : i64, vector_flops = 0 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<16x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      systolic.end
    } loc("bad.model":3:5)
    func.return
  }
}
// FIGURE: bad.model:3:5: error: 'systolic.program' op failed to verify: 'systolic.program' write_bytes must be >= 0

// ----- block-args
// any hardware kernel: block arguments that differ from ins and outs.
builtin.module {
  func.func @k(%x: memref<8x16xf32, "global">, %w: memref<16x16xf32, "global">, %y: memref<8x16xf32, "global">) {
    tsp.program "gemm_0" ins(%x, %w : memref<8x16xf32, "global">, memref<16x16xf32, "global">) outs(%y : memref<8x16xf32, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "mxm"], weight_bytes = 1024 : i64, stream_bytes = 1024 : i64} {
    ^bb0(%xa: memref<8x16xf32, "global">, %wa: memref<8x16xf32, "global">, %ya: memref<8x16xf32, "global">):
      tsp.end
    } loc("bad.model":3:5)
    func.return
  }
}
// ARGS: bad.model:3:5: error: 'tsp.program' op failed to verify: 'tsp.program' block arguments must match its ins and outs
