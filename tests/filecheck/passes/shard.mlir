// RUN: strata opt %s -p 'shard{tp=2}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'shard{tp=2},fuse{target=gpu},assign-layout{target=gpu},tile{target=gpu},lower-to-loops,place-chips{target=gpu},lower-to-hardware{target=gpu}' --no-debuginfo | filecheck %s --check-prefix=HW

// A Megatron MLP: the first weight splits by columns, the second by rows,
// and their partial sums meet in one all-reduce.
builtin.module attributes {strata.batch = 8 : i64} {
  func.func @m(%x: tensor<8x16xf32> {graph.input = "x"}, %w1: tensor<16x64xf32> {graph.param = "w1"}, %w2: tensor<64x16xf32> {graph.param = "w2"}) -> tensor<8x16xf32> {
    %0 = graph.matmul %x, %w1 : tensor<8x16xf32>, tensor<16x64xf32> -> tensor<8x64xf32>
    %1 = graph.relu %0 : tensor<8x64xf32>
    %2 = graph.matmul %1, %w2 : tensor<8x64xf32>, tensor<64x16xf32> -> tensor<8x16xf32>
    func.return %2 : tensor<8x16xf32>
  }
}

// CHECK:      builtin.module attributes {{{.*}}strata.tp = 2 : i64
// CHECK:      func.func @m(%x: tensor<8x16xf32> {graph.input = "x"}, %w1: tensor<16x32xf32> {graph.param = "w1", strata.split = {{\[\[}}"tp", 1 : i64, 1 : i64]]}, %w2: tensor<32x16xf32> {graph.param = "w2", strata.split = {{\[\[}}"tp", 0 : i64, 1 : i64]]})
// CHECK-NEXT:   graph.matmul %x, %w1 : tensor<8x16xf32>, tensor<16x32xf32> -> tensor<8x32xf32>
// CHECK-NEXT:   graph.relu
// CHECK-NEXT:   %[[P:.*]] = graph.matmul {{.*}} : tensor<8x32xf32>, tensor<32x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   %[[S:.*]] = graph.all_reduce %[[P]] {axis = "tp", devices = 2 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:   func.return %[[S]]

// HW:      simt.kernel
// HW:      simt.kernel
// HW:      simt.all_reduce %{{.*}}, %{{.*}} {axis = "tp", devices = 2 : i64} : memref<8x16xf32, {{.*}}> -> memref<8x16xf32, {{.*}}>
// HW:      func.return
