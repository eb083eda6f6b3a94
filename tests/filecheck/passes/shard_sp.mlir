// RUN: strata opt %s -p 'shard{tp=2 sp=true}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'shard{tp=2 sp=true},fuse{target=gpu},assign-layout{target=gpu},tile{target=gpu},lower-to-loops,place-chips{target=gpu},lower-to-hardware{target=gpu}' --no-debuginfo | filecheck %s --check-prefix=HW

// Sequence parallelism (Megatron-LM): the input and the residual add stay
// split along the rows; the column-parallel GEMM gets the rows gathered, and
// the row-parallel GEMM's partial sums meet in a reduce-scatter, not an
// all-reduce. The output is gathered whole before the return.
builtin.module {
  func.func @m(%x: tensor<8x16xf32> {graph.input = "x"}, %w1: tensor<16x64xf32> {graph.param = "w1"}, %w2: tensor<64x16xf32> {graph.param = "w2"}) -> tensor<8x16xf32> {
    %0 = graph.matmul %x, %w1 : tensor<8x16xf32>, tensor<16x64xf32> -> tensor<8x64xf32>
    %1 = graph.relu %0 : tensor<8x64xf32>
    %2 = graph.matmul %1, %w2 : tensor<8x64xf32>, tensor<64x16xf32> -> tensor<8x16xf32>
    %3 = graph.add %x, %2 : tensor<8x16xf32>, tensor<8x16xf32> -> tensor<8x16xf32>
    func.return %3 : tensor<8x16xf32>
  }
}

// CHECK:      builtin.module attributes {{{.*}}strata.tp = 2 : i64
// CHECK:      func.func @m(%x: tensor<4x16xf32> {graph.input = "x", strata.split = {{\[\[}}"tp", 0 : i64, 1 : i64]]}, %w1: tensor<16x32xf32> {graph.param = "w1", strata.split = {{\[\[}}"tp", 1 : i64, 1 : i64]]}, %w2: tensor<32x16xf32> {graph.param = "w2", strata.split = {{\[\[}}"tp", 0 : i64, 1 : i64]]})
// CHECK-NEXT:   %[[G:.*]] = graph.all_gather %x {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : tensor<4x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   graph.matmul %[[G]], %w1 : tensor<8x16xf32>, tensor<16x32xf32> -> tensor<8x32xf32>
// CHECK-NEXT:   graph.relu
// CHECK-NEXT:   %[[P:.*]] = graph.matmul {{.*}} : tensor<8x32xf32>, tensor<32x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   %[[S:.*]] = graph.reduce_scatter %[[P]] {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : tensor<8x16xf32> -> tensor<4x16xf32>
// CHECK-NEXT:   %[[R:.*]] = graph.add %x, %[[S]] : tensor<4x16xf32>, tensor<4x16xf32> -> tensor<4x16xf32>
// CHECK-NEXT:   %[[O:.*]] = graph.all_gather %[[R]] {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : tensor<4x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   func.return %[[O]]
// CHECK-NOT:  graph.all_reduce

// HW:      simt.all_gather %{{.*}}, %{{.*}} {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : memref<4x16xf32, {{.*}}> -> memref<8x16xf32, {{.*}}>
// HW:      simt.kernel
// HW:      simt.kernel
// HW:      simt.reduce_scatter %{{.*}}, %{{.*}} {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : memref<8x16xf32, {{.*}}> -> memref<4x16xf32, {{.*}}>
// HW:      simt.kernel
// HW:      simt.all_gather
// HW:      func.return
