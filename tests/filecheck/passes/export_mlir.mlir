// RUN: strata opt %s -p export-mlir --no-debuginfo | filecheck %s
// RUN: strata opt %s -p export-mlir --no-debuginfo | filecheck %s --check-prefix=UPSTREAM

// A GEMM kernel (8x8x8 tiles, an edge tile along N = 12, a K loop) and a
// softmax kernel over TPU (8, 128)-tiled buffers, with relayout copies.

builtin.module attributes {strata.target = "tpu"} {
  func.func @m(%x: memref<8x16xf32, #graph.layout<[0, 1]>, "global"> {graph.input = "x"}, %w: memref<16x12xf32, #graph.layout<[0, 1]>, "global"> {graph.param = "w"}, %b: memref<12xf32, #graph.layout<[0]>, "global"> {graph.param = "b"}) -> memref<8x12xf32, #graph.layout<[0, 1]>, "global"> {
    %0 = memref.alloc() : memref<8x16xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
    loop.copy %x, %0 : memref<8x16xf32, #graph.layout<[0, 1]>, "global"> -> memref<8x16xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
    %1 = memref.alloc() : memref<16x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
    loop.copy %w, %1 : memref<16x12xf32, #graph.layout<[0, 1]>, "global"> -> memref<16x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
    %2 = memref.alloc() : memref<12xf32, #graph.layout<[0], tile = [128]>, "global">
    loop.copy %b, %2 : memref<12xf32, #graph.layout<[0]>, "global"> -> memref<12xf32, #graph.layout<[0], tile = [128]>, "global">
    %3 = memref.alloc() : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
    loop.kernel "gemm_0" ins(%0, %1, %2 : memref<8x16xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">, memref<16x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">, memref<12xf32, #graph.layout<[0], tile = [128]>, "global">) outs(%3 : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">) attributes {kind = "gemm", bounds = array<i64: 8, 12, 16>, tile_sizes = array<i64: 8, 8, 8>, loop_order = array<i64: 0, 1>, ops = ["graph.matmul", "graph.add", "graph.relu"]} {
    ^bb0(%4: memref<8x16xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">, %5: memref<16x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">, %6: memref<12xf32, #graph.layout<[0], tile = [128]>, "global">, %7: memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">):
      %8 = arith.constant 0 : index
      %9 = arith.constant 0 : index
      %10 = arith.constant 12 : index
      %11 = arith.constant 8 : index
      scf.for %12 = %9 to %10 step %11 {
        %13 = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<8x8xf32>
        %14 = arith.constant 0 : index
        %15 = arith.constant 16 : index
        %16 = arith.constant 8 : index
        %17 = scf.for %18 = %14 to %15 step %16 iter_args(%19 = %13) -> (tensor<8x8xf32>) {
          %20 = loop.load %4[%8, %12, %18] {map = affine_map<(d0, d1, d2) -> (0, d2)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<8x16xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global"> -> tensor<8x8xf32>
          %21 = loop.load %5[%8, %12, %18] {map = affine_map<(d0, d1, d2) -> (d2, d1)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global"> -> tensor<8x8xf32>
          %22 = graph.matmul %20, %21 : tensor<8x8xf32>, tensor<8x8xf32> -> tensor<8x8xf32>
          %23 = graph.add %19, %22 : tensor<8x8xf32>, tensor<8x8xf32> -> tensor<8x8xf32>
          scf.yield %23 : tensor<8x8xf32>
        } {loop.dim = 2 : i64}
        %24 = loop.load %6[%8, %12, %8] {map = affine_map<(d0, d1, d2) -> (d1)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<12xf32, #graph.layout<[0], tile = [128]>, "global"> -> tensor<8xf32>
        %25 = graph.add %17, %24 : tensor<8x8xf32>, tensor<8xf32> -> tensor<8x8xf32>
        %26 = graph.relu %25 : tensor<8x8xf32>
        loop.store %26, %7[%8, %12, %8] {map = affine_map<(d0, d1, d2) -> (0, d1)>} : tensor<8x8xf32> -> memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
      } {loop.dim = 1 : i64}
      loop.end
    }
    %4 = memref.alloc() : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
    loop.kernel "row_0" ins(%3 : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">) outs(%4 : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">) attributes {kind = "row", bounds = array<i64: 8, 12>, tile_sizes = array<i64: 8, 12>, loop_order = array<i64: 0, 1>, ops = ["graph.softmax"]} {
    ^bb0(%5: memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">, %6: memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">):
      %7 = arith.constant 0 : index
      %8 = loop.load %5[%7, %7] {map = affine_map<(d0, d1) -> (0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global"> -> tensor<8x12xf32>
      %9 = graph.softmax %8 {axis = 1 : i64} : tensor<8x12xf32>
      loop.store %9, %6[%7, %7] {map = affine_map<(d0, d1) -> (0, 0)>} : tensor<8x12xf32> -> memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global">
      loop.end
    }
    %5 = memref.alloc() : memref<8x12xf32, #graph.layout<[0, 1]>, "global">
    loop.copy %4, %5 : memref<8x12xf32, #graph.layout<[0, 1], tile = [8, 128]>, "global"> -> memref<8x12xf32, #graph.layout<[0, 1]>, "global">
    func.return %5 : memref<8x12xf32, #graph.layout<[0, 1]>, "global">
  }
}

// Each kernel is a private function over plain memrefs of the buffers' physical shapes.
// CHECK-LABEL: func.func private @m_gemm_0(%{{.*}}: memref<1x1x8x128xf32>, %{{.*}}: memref<2x1x8x128xf32>, %{{.*}}: memref<1x128xf32>, %{{.*}}: memref<1x1x8x128xf32>)
// CHECK-SAME:    strata.kind = "gemm"
// CHECK-SAME:    strata.tile_sizes = array<i64: 8, 8, 8>
// The loop over N tiles (two of them) runs in parallel.
// CHECK:         "scf.parallel"
// CHECK:           linalg.fill
// CHECK:           scf.for %{{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (tensor<8x8xf32>)
// A tile load maps logical to physical indices through the (8, 128) tiling.
// CHECK:             linalg.generic
// CHECK:               linalg.index 0
// CHECK:               arith.divui
// CHECK:               arith.remui
// CHECK:               memref.load %{{.*}} : memref<1x1x8x128xf32>
// w's tile is packed for the micro-kernel in strips of 16 columns: the columns
// past the tile (8) and past the buffer (N = 12, the edge tile) are zeros.
// CHECK:             linalg.generic {{.*}} outs(%{{.*}} : tensor<1x8x16xf32>)
// CHECK:               arith.cmpi ult
// CHECK:               arith.cmpi ult
// CHECK:               memref.load %{{.*}} : memref<2x1x8x128xf32>
// CHECK:               arith.select
// The matmul accumulates into the loop-carried accumulator: 8 rows by one
// 16-lane vector, masked at the tile's edge, one FMA per row at each k.
// CHECK:             scf.for {{.*}} iter_args(%{{.*}} = %[[ACC]]) -> (tensor<8x8xf32>)
// CHECK:               scf.for
// CHECK:                 vector.transfer_read %{{.*}} : tensor<8x8xf32>, vector<16xf32>
// CHECK:                 scf.for {{.*}} -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK:                   vector.transfer_read %{{.*}} {in_bounds = [true]} : tensor<1x8x16xf32>, vector<16xf32>
// CHECK:                   tensor.extract
// CHECK:                   vector.broadcast
// CHECK:                   vector.fma
// CHECK:                 vector.transfer_write %{{.*}} : vector<16xf32>, tensor<8x8xf32>
// CHECK:             scf.yield
// Bias, relu, then the store, clipped to the buffer.
// CHECK:           linalg.generic
// CHECK:           linalg.generic
// CHECK:             arith.maximumf
// CHECK:           arith.maxsi
// CHECK:           arith.minsi
// CHECK:           scf.for
// CHECK:             scf.for
// CHECK:               tensor.extract
// CHECK:               memref.store %{{.*}} : memref<1x1x8x128xf32>
// CHECK:         func.return

// Softmax rows of 12 (`SHORT_ROWS`): one masked vector per row, the exponential one flat loop
// (`Emitter.exp`: a polynomial and an exponent built from integers, no libm).
// CHECK-LABEL: func.func private @m_row_0(
// CHECK-SAME:    strata.kind = "row"
// CHECK:         scf.for
// CHECK:           vector.transfer_read %{{.*}} : tensor<8x12xf32>, vector<16xf32>
// CHECK:           vector.shuffle
// CHECK:           arith.maximumf %{{.*}} : vector<8xf32>
// CHECK:           arith.subf %{{.*}} : vector<16xf32>
// CHECK:           vector.transfer_write %{{.*}} : vector<16xf32>, tensor<8x12xf32>
// CHECK:         linalg.generic {{.*}} iterator_types = ["parallel"]
// CHECK:           arith.maximumf
// CHECK:           arith.shli
// CHECK-NOT:       math.exp
// CHECK:           vector.reduction <add>
// CHECK:           arith.divf %{{.*}} : vector<16xf32>

// The params' relayouts depend on the params alone: they run once, at load, into the buffers
// the model function reads on every call.
// CHECK-LABEL: func.func @m_load(%x: memref<8x16xf32> {graph.input = "x"}, %w: memref<16x12xf32> {graph.param = "w"}, %b: memref<12xf32> {graph.param = "b"}, %prepared0: memref<2x1x8x128xf32> {strata.prepared = 0 : i64}, %prepared1: memref<1x128xf32> {strata.prepared = 1 : i64}) attributes {llvm.emit_c_interface, strata.load}
// CHECK-NOT:     memref.alloc
// CHECK:         memref.load %w
// CHECK:         memref.store %{{.*}}, %prepared0
// CHECK:         memref.load %b
// CHECK:         memref.store %{{.*}}, %prepared1
// CHECK-NOT:     func.call
// CHECK:         func.return

// The model function: logical inputs and params, one output buffer, the prepared buffers, the C interface.
// CHECK-LABEL: func.func @m(%x: memref<8x16xf32> {graph.input = "x"}, %w: memref<16x12xf32> {graph.param = "w"}, %b: memref<12xf32> {graph.param = "b"}, %out0: memref<8x12xf32> {strata.output = 0 : i64}, %prepared0: memref<2x1x8x128xf32> {strata.prepared = 0 : i64}, %prepared1: memref<1x128xf32> {strata.prepared = 1 : i64}) attributes {llvm.emit_c_interface}
// CHECK:         %[[X:.*]] = memref.alloc() : memref<1x1x8x128xf32>
// CHECK:         memref.load %x
// CHECK:         memref.store %{{.*}}, %[[X]]
// CHECK-NOT:     memref.load %w
// CHECK:         func.call @m_gemm_0(%[[X]], %prepared0, %prepared1,
// CHECK:         func.call @m_row_0(
// The last relayout writes the output buffer itself: no allocation, no copy.
// CHECK-NOT:     memref.copy
// CHECK:         memref.store %{{.*}}, %out0
// CHECK-NOT:     memref.copy
// CHECK:         func.return

// Nothing of strata's dialects, layouts or memory spaces is left.
// UPSTREAM-NOT: {{= (graph|loop)\.}}
// UPSTREAM-NOT: {{^ *(graph|loop)\.}}
// UPSTREAM-NOT: #graph.layout
// UPSTREAM-NOT: "global">
// UPSTREAM: func.func @m(
// UPSTREAM-NOT: {{= (graph|loop)\.}}
// UPSTREAM-NOT: {{^ *(graph|loop)\.}}
// UPSTREAM-NOT: #graph.layout
// UPSTREAM-NOT: "global">
