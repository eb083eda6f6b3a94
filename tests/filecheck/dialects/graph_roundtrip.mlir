// RUN: strata opt %s --no-debuginfo | filecheck %s
// RUN: strata opt %s --no-debuginfo | strata opt - --no-debuginfo | filecheck %s

builtin.module {
  func.func @m(%x: tensor<1x3x8x8xf32> {graph.input = "x"}, %w: tensor<4x3x3x3xf32> {graph.param = "w"}, %b: tensor<4xf32> {graph.param = "b"}, %g: tensor<8xf32> {graph.param = "g"}) -> tensor<1x4x8x8xf32> {
    %c = graph.conv2d %x, %w bias %b : tensor<4xf32> {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
    %ninf = graph.constant {value = 0xFFF0000000000000 : f64} : tensor<f32>
    %a = graph.maximum %c, %ninf : tensor<1x4x8x8xf32>, tensor<f32> -> tensor<1x4x8x8xf32>
    %l = graph.layernorm %a scale %g : tensor<8xf32> {axis = 3 : i64, epsilon = 1.000000e-05 : f64} : tensor<1x4x8x8xf32>
    %s = graph.sum %l {axes = array<i64: 1, 3>, keepdims} : tensor<1x4x8x8xf32> -> tensor<1x1x8x1xf32>
    %p, %q = graph.split %l {axis = 1 : i64} : tensor<1x4x8x8xf32> -> tensor<1x2x8x8xf32>, tensor<1x2x8x8xf32>
    %j = graph.concat %p, %q {axis = 1 : i64} : tensor<1x2x8x8xf32>, tensor<1x2x8x8xf32> -> tensor<1x4x8x8xf32>
    func.return %j : tensor<1x4x8x8xf32>
  }
}

// CHECK:      %c = graph.conv2d %x, %w bias %b : tensor<4xf32> {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
// CHECK-NEXT: %ninf = graph.constant {value = 0xfff0000000000000 : f64} : tensor<f32>
// CHECK-NEXT: %a = graph.maximum %c, %ninf
// CHECK-NEXT: %l = graph.layernorm %a scale %g : tensor<8xf32> {axis = 3 : i64, epsilon = 1.000000e-05 : f64} : tensor<1x4x8x8xf32>
// CHECK-NEXT: %s = graph.sum %l {axes = array<i64: 1, 3>, keepdims} : tensor<1x4x8x8xf32> -> tensor<1x1x8x1xf32>
// CHECK-NEXT: %p, %q = graph.split %l {axis = 1 : i64}
// CHECK-NEXT: %j = graph.concat %p, %q {axis = 1 : i64}
