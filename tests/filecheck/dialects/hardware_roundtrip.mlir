// Round trip of the three hardware dialects (simt, systolic, tsp) in ONE
// module, which also checks that all three load into one context: every op
// prints in its custom format, re-parses, and prints again identically.
// RUN: strata opt %s --no-debuginfo | filecheck %s
// RUN: strata opt %s --no-debuginfo | strata opt - --no-debuginfo | filecheck %s
// RUN: strata opt %s --no-debuginfo > %t.1.mlir && strata opt %t.1.mlir --no-debuginfo > %t.2.mlir && diff %t.1.mlir %t.2.mlir

builtin.module attributes {strata.target = "lpu", strata.chips = 2 : i64} {
  func.func @m(%x: memref<8x16xf32, #graph.layout<[0, 1]>, "global"> {graph.input = "x"}, %w: memref<16x16xf32, #graph.layout<[0, 1]>, "global"> {graph.param = "w"}) -> memref<8x16xf32, #graph.layout<[0, 1]>, "global"> {
    %a = memref.alloc() : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
    simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, #graph.layout<[0, 1]>, "global">, memref<16x16xf32, #graph.layout<[0, 1]>, "global">) outs(%a : memref<8x16xf32, #graph.layout<[0, 1]>, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], grid = array<i64: 1, 1, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8, 8>} {
    ^bb0(%xa: memref<8x16xf32, #graph.layout<[0, 1]>, "global">, %wa: memref<16x16xf32, #graph.layout<[0, 1]>, "global">, %ya: memref<8x16xf32, #graph.layout<[0, 1]>, "global">):
      %xt = loop.load %xa[] {map = affine_map<() -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<8x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<8x16xf32>
      %wt = loop.load %wa[] {map = affine_map<() -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<16x16xf32>
      %yt = simt.mma %xt, %wt {shape = array<i64: 16, 8, 8>} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32>
      loop.store %yt, %ya[] {map = affine_map<() -> (0, 0)>} : tensor<8x16xf32> -> memref<8x16xf32, #graph.layout<[0, 1]>, "global">
      simt.end
    }
    %b = memref.alloc() : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
    systolic.program "gemm_1" ins(%a, %w : memref<8x16xf32, #graph.layout<[0, 1]>, "global">, memref<16x16xf32, #graph.layout<[0, 1]>, "global">) outs(%b : memref<8x16xf32, #graph.layout<[0, 1]>, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], dataflow = "os", dma_in_bytes = 1536 : i64, dma_out_bytes = 512 : i64, vmem_bytes = 1536 : i64, vector_flops = 0 : i64} {
    ^bb0(%xa: memref<8x16xf32, #graph.layout<[0, 1]>, "global">, %wa: memref<16x16xf32, #graph.layout<[0, 1]>, "global">, %ya: memref<8x16xf32, #graph.layout<[0, 1]>, "global">):
      %xt = loop.load %xa[] {map = affine_map<() -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<8x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<8x16xf32>
      %wt = loop.load %wa[] {map = affine_map<() -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<16x16xf32>
      %yt = systolic.matmul %xt, %wt {dataflow = "os"} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32>
      loop.store %yt, %ya[] {map = affine_map<() -> (0, 0)>} : tensor<8x16xf32> -> memref<8x16xf32, #graph.layout<[0, 1]>, "global">
      systolic.end
    }
    %c = memref.alloc() : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
    tsp.program "gemm_2" ins(%b, %w : memref<8x16xf32, #graph.layout<[0, 1]>, "global">, memref<16x16xf32, #graph.layout<[0, 1]>, "global">) outs(%c : memref<8x16xf32, #graph.layout<[0, 1]>, "global">) attributes {kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>, flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>], chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "mxm"], weight_bytes = 1024 : i64, stream_bytes = 1024 : i64} {
    ^bb0(%xa: memref<8x16xf32, #graph.layout<[0, 1]>, "global">, %wa: memref<16x16xf32, #graph.layout<[0, 1]>, "global">, %ya: memref<8x16xf32, #graph.layout<[0, 1]>, "global">):
      %xt = loop.load %xa[] {map = affine_map<() -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<8x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<8x16xf32>
      %wt = loop.load %wa[] {map = affine_map<() -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x16xf32, #graph.layout<[0, 1]>, "global"> -> tensor<16x16xf32>
      %yt = tsp.mxm %xt, %wt : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32>
      loop.store %yt, %ya[] {map = affine_map<() -> (0, 0)>} : tensor<8x16xf32> -> memref<8x16xf32, #graph.layout<[0, 1]>, "global">
      tsp.end
    }
    %d = memref.alloc() : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
    tsp.transfer %c, %d {from_chip = 0 : i64, to_chip = 1 : i64} : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
    func.return %d : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
  }
}

// CHECK:      builtin.module attributes {strata.target = "lpu", strata.chips = 2 : i64} {

// simt: launch geometry, shared memory, pipeline depth, registers, MMA shape.
// CHECK:      %a = memref.alloc()
// CHECK-NEXT: simt.kernel "gemm_0" ins(%x, %w : memref<8x16xf32, #graph.layout<[0, 1]>, "global">, memref<16x16xf32, #graph.layout<[0, 1]>, "global">) outs(%a : memref<8x16xf32, #graph.layout<[0, 1]>, "global">) attributes {
// CHECK-SAME:   kind = "gemm", ops = ["graph.matmul"], bounds = array<i64: 8, 16, 16>, tile_sizes = array<i64: 8, 16, 16>, loop_order = array<i64: 0, 1>,
// CHECK-SAME:   flops = 4096 : i64, matrix_flops = 4096 : i64, read_bytes = 1536 : i64, write_bytes = 512 : i64, onchip_bytes = 1536 : i64, gemms = [array<i64: 1, 8, 16, 16>],
// CHECK-SAME:   grid = array<i64: 1, 1, 1>, block = array<i64: 32, 1, 1>, smem_bytes = 4608 : i64, stages = 3 : i64, regs_per_thread = 36 : i64, mma = array<i64: 16, 8, 8>} {
// CHECK-NEXT: ^bb0(%xa: memref<8x16xf32, #graph.layout<[0, 1]>, "global">, %wa: memref<16x16xf32, #graph.layout<[0, 1]>, "global">, %ya: memref<8x16xf32, #graph.layout<[0, 1]>, "global">):
// CHECK-NEXT:   %xt = loop.load %xa[]
// CHECK-NEXT:   %wt = loop.load %wa[]
// CHECK-NEXT:   %yt = simt.mma %xt, %wt {shape = array<i64: 16, 8, 8>} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   loop.store %yt, %ya[]
// CHECK-NEXT:   simt.end
// CHECK-NEXT: }

// systolic: dataflow on the program and on its matmul, DMA and VMEM figures.
// CHECK-NEXT: %b = memref.alloc()
// CHECK-NEXT: systolic.program "gemm_1" ins(%a, %w : {{.*}}) outs(%b : {{.*}}) attributes {
// CHECK-SAME:   gemms = [array<i64: 1, 8, 16, 16>], dataflow = "os", dma_in_bytes = 1536 : i64, dma_out_bytes = 512 : i64, vmem_bytes = 1536 : i64, vector_flops = 0 : i64} {
// CHECK-NEXT: ^bb0(%xa: {{.*}}, %wa: {{.*}}, %ya: {{.*}}):
// CHECK-NEXT:   %xt = loop.load %xa[]
// CHECK-NEXT:   %wt = loop.load %wa[]
// CHECK-NEXT:   %yt = systolic.matmul %xt, %wt {dataflow = "os"} : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   loop.store %yt, %ya[]
// CHECK-NEXT:   systolic.end
// CHECK-NEXT: }

// tsp: placement (chip, shards, slot), units, resident weights, streamed bytes;
// then a transfer of its output to chip 1.
// CHECK-NEXT: %c = memref.alloc()
// CHECK-NEXT: tsp.program "gemm_2" ins(%b, %w : {{.*}}) outs(%c : {{.*}}) attributes {
// CHECK-SAME:   gemms = [array<i64: 1, 8, 16, 16>], chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "mxm"], weight_bytes = 1024 : i64, stream_bytes = 1024 : i64} {
// CHECK-NEXT: ^bb0(%xa: {{.*}}, %wa: {{.*}}, %ya: {{.*}}):
// CHECK-NEXT:   %xt = loop.load %xa[]
// CHECK-NEXT:   %wt = loop.load %wa[]
// CHECK-NEXT:   %yt = tsp.mxm %xt, %wt : tensor<8x16xf32>, tensor<16x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   loop.store %yt, %ya[]
// CHECK-NEXT:   tsp.end
// CHECK-NEXT: }
// CHECK-NEXT: %d = memref.alloc()
// CHECK-NEXT: tsp.transfer %c, %d {from_chip = 0 : i64, to_chip = 1 : i64} : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT: func.return %d
