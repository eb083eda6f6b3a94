// RUN: strata opt %s -p 'fuse{target=gpu}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'fuse{target=gpu epilogue=false}' --no-debuginfo | filecheck %s --check-prefix=NOEPI

builtin.module {
  func.func @m(%x: tensor<8x16xf32> {graph.input = "x"}, %w: tensor<16x4xf32> {graph.param = "w"}, %b: tensor<4xf32> {graph.param = "b"}) -> tensor<8x4xf32> {
    %0 = graph.matmul %x, %w : tensor<8x16xf32>, tensor<16x4xf32> -> tensor<8x4xf32>
    %1 = graph.add %0, %b : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %2 = graph.relu %1 : tensor<8x4xf32>
    %3 = graph.softmax %2 {axis = 1 : i64} : tensor<8x4xf32>
    func.return %3 : tensor<8x4xf32>
  }
}

// CHECK:      %{{.*}} = graph.kernel "gemm_0"(%x, %w, %b) {kind = "gemm"} : (tensor<8x16xf32>, tensor<16x4xf32>, tensor<4xf32>) -> tensor<8x4xf32> {
// CHECK-NEXT: ^bb0(%x_1: tensor<8x16xf32>, %w_1: tensor<16x4xf32>, %b_1: tensor<4xf32>):
// CHECK-NEXT:   graph.matmul
// CHECK-NEXT:   graph.add
// CHECK-NEXT:   graph.relu
// CHECK-NEXT:   graph.yield
// CHECK-NEXT: }
// CHECK-NEXT: %{{.*}} = graph.kernel "row_0"
// CHECK-NEXT: ^bb0
// CHECK-NEXT:   graph.softmax
// CHECK-NEXT:   graph.yield
// CHECK:      func.return

// NOEPI:      graph.kernel "gemm_0"(%x, %w)
// NOEPI:      graph.kernel "row_0"(%{{.*}}, %b)
// NOEPI:        graph.add
// NOEPI-NEXT:   graph.relu
// NOEPI-NEXT:   graph.softmax
