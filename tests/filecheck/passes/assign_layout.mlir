// RUN: strata opt %s -p 'assign-layout{target=gpu}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'assign-layout{target=gpu},assign-layout{target=gpu}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'assign-layout{target=gpu}' --no-debuginfo | strata opt - -p 'assign-layout{target=gpu}' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'assign-layout{target=tpu}' --no-debuginfo | filecheck %s --check-prefix=TPU
// RUN: strata opt %s -p 'assign-layout{target=tpu}' --no-debuginfo | strata opt - -p 'assign-layout{target=tpu}' --no-debuginfo | filecheck %s --check-prefix=TPU
// RUN: strata opt %s -p 'assign-layout{target=lpu}' --no-debuginfo | filecheck %s --check-prefix=LPU
// RUN: strata opt %s -p 'assign-layout{target=gpu channels_last=false}' --no-debuginfo | filecheck %s --check-prefix=NOCL
// RUN: strata opt %s -p 'assign-layout{target=tpu tiled=false}' --no-debuginfo | filecheck %s --check-prefix=FLAT

// Fused IR (after `fuse`): a conv+relu kernel, an elementwise kernel and a
// pool; a GEMM with a bias+relu epilogue; and a GEMM whose input already went
// through two relayouts that undo each other.

builtin.module {
  func.func @conv(%x: tensor<1x3x8x8xf32> {graph.input = "x"}, %w: tensor<4x3x3x3xf32> {graph.param = "w"}, %b: tensor<4xf32> {graph.param = "b"}) -> tensor<1x4x4x4xf32> {
    %h = graph.kernel "conv_0"(%x, %w, %b) {kind = "conv"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32> {
    ^bb0(%x_1: tensor<1x3x8x8xf32>, %w_1: tensor<4x3x3x3xf32>, %b_1: tensor<4xf32>):
      %0 = graph.conv2d %x_1, %w_1 bias %b_1 : tensor<4xf32> {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
      %1 = graph.relu %0 : tensor<1x4x8x8xf32>
      graph.yield %1 : tensor<1x4x8x8xf32>
    }
    %sq = graph.kernel "elementwise_0"(%h) {kind = "elementwise"} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32> {
    ^bb0(%h_1: tensor<1x4x8x8xf32>):
      %0 = graph.mul %h_1, %h_1 : tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
      graph.yield %0 : tensor<1x4x8x8xf32>
    }
    %p = graph.kernel "pool_0"(%sq) {kind = "pool"} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32> {
    ^bb0(%s_1: tensor<1x4x8x8xf32>):
      %0 = graph.maxpool2d %s_1 {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : tensor<1x4x8x8xf32> -> tensor<1x4x4x4xf32>
      graph.yield %0 : tensor<1x4x4x4xf32>
    }
    func.return %p : tensor<1x4x4x4xf32>
  }
  func.func @mm(%x: tensor<16x32xf32> {graph.input = "x"}, %w: tensor<32x8xf32> {graph.param = "w"}, %b: tensor<8xf32> {graph.param = "b"}) -> tensor<16x8xf32> {
    %y = graph.kernel "gemm_0"(%x, %w, %b) {kind = "gemm"} : (tensor<16x32xf32>, tensor<32x8xf32>, tensor<8xf32>) -> tensor<16x8xf32> {
    ^bb0(%x_1: tensor<16x32xf32>, %w_1: tensor<32x8xf32>, %b_1: tensor<8xf32>):
      %0 = graph.matmul %x_1, %w_1 : tensor<16x32xf32>, tensor<32x8xf32> -> tensor<16x8xf32>
      %1 = graph.add %0, %b_1 : tensor<16x8xf32>, tensor<8xf32> -> tensor<16x8xf32>
      %2 = graph.relu %1 : tensor<16x8xf32>
      graph.yield %2 : tensor<16x8xf32>
    }
    func.return %y : tensor<16x8xf32>
  }
  func.func @chain(%x: tensor<16x32xf32, #graph.layout<[0, 1]>> {graph.input = "x"}, %w: tensor<32x8xf32, #graph.layout<[0, 1]>> {graph.param = "w"}) -> tensor<16x8xf32, #graph.layout<[0, 1]>> {
    %t = graph.relayout %x : tensor<16x32xf32, #graph.layout<[0, 1]>> -> tensor<16x32xf32, #graph.layout<[1, 0]>>
    %u = graph.relayout %t : tensor<16x32xf32, #graph.layout<[1, 0]>> -> tensor<16x32xf32, #graph.layout<[0, 1]>>
    %y = graph.kernel "gemm_1"(%u, %w) {kind = "gemm"} : (tensor<16x32xf32, #graph.layout<[0, 1]>>, tensor<32x8xf32, #graph.layout<[0, 1]>>) -> tensor<16x8xf32, #graph.layout<[0, 1]>> {
    ^bb0(%x_1: tensor<16x32xf32>, %w_1: tensor<32x8xf32>):
      %0 = graph.matmul %x_1, %w_1 : tensor<16x32xf32>, tensor<32x8xf32> -> tensor<16x8xf32>
      graph.yield %0 : tensor<16x8xf32>
    }
    func.return %y : tensor<16x8xf32, #graph.layout<[0, 1]>>
  }
}

// ---- gpu: conv and pool tensors channels-last (NHWC, filters OHWI), no tiling.
// Model inputs, params and results stay logical; the relayouts are explicit.

// CHECK-LABEL: func.func @conv(
// CHECK-SAME:    %x: tensor<1x3x8x8xf32, #graph.layout<[0, 1, 2, 3]>> {graph.input = "x"}
// CHECK-SAME:    %w: tensor<4x3x3x3xf32, #graph.layout<[0, 1, 2, 3]>> {graph.param = "w"}
// CHECK-SAME:    %b: tensor<4xf32, #graph.layout<[0]>> {graph.param = "b"}
// CHECK-SAME:    -> tensor<1x4x4x4xf32, #graph.layout<[0, 1, 2, 3]>> {
// CHECK-NEXT:    %[[X:.*]] = graph.relayout %x : tensor<1x3x8x8xf32, #graph.layout<[0, 1, 2, 3]>> -> tensor<1x3x8x8xf32, #graph.layout<[0, 2, 3, 1]>>
// CHECK-NEXT:    %[[W:.*]] = graph.relayout %w : tensor<4x3x3x3xf32, #graph.layout<[0, 1, 2, 3]>> -> tensor<4x3x3x3xf32, #graph.layout<[0, 2, 3, 1]>>
// CHECK-NEXT:    %[[H:.*]] = graph.kernel "conv_0"(%[[X]], %[[W]], %b) {kind = "conv"} : (tensor<1x3x8x8xf32, #graph.layout<[0, 2, 3, 1]>>, tensor<4x3x3x3xf32, #graph.layout<[0, 2, 3, 1]>>, tensor<4xf32, #graph.layout<[0]>>) -> tensor<1x4x8x8xf32, #graph.layout<[0, 2, 3, 1]>> {
// Kernel bodies stay logical.
// CHECK-NEXT:    ^bb0(%{{.*}}: tensor<1x3x8x8xf32>, %{{.*}}: tensor<4x3x3x3xf32>, %{{.*}}: tensor<4xf32>):
// CHECK-NEXT:      graph.conv2d {{.*}} : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x8x8xf32>
// CHECK-NEXT:      graph.relu {{.*}} : tensor<1x4x8x8xf32>
// CHECK-NEXT:      graph.yield
// CHECK-NEXT:    }
// The elementwise kernel follows its operand's layout: no relayout around it.
// CHECK-NEXT:    %[[SQ:.*]] = graph.kernel "elementwise_0"(%[[H]]) {kind = "elementwise"} : (tensor<1x4x8x8xf32, #graph.layout<[0, 2, 3, 1]>>) -> tensor<1x4x8x8xf32, #graph.layout<[0, 2, 3, 1]>> {
// CHECK-NEXT:    ^bb0(%{{.*}}: tensor<1x4x8x8xf32>):
// CHECK-NOT:     graph.relayout
// CHECK:         %[[P:.*]] = graph.kernel "pool_0"(%[[SQ]]) {kind = "pool"} : (tensor<1x4x8x8xf32, #graph.layout<[0, 2, 3, 1]>>) -> tensor<1x4x4x4xf32, #graph.layout<[0, 2, 3, 1]>> {
// CHECK-NEXT:    ^bb0(%{{.*}}: tensor<1x4x8x8xf32>):
// CHECK-NEXT:      graph.maxpool2d {{.*}} : tensor<1x4x8x8xf32> -> tensor<1x4x4x4xf32>
// CHECK-NEXT:      graph.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[OUT:.*]] = graph.relayout %[[P]] : tensor<1x4x4x4xf32, #graph.layout<[0, 2, 3, 1]>> -> tensor<1x4x4x4xf32, #graph.layout<[0, 1, 2, 3]>>
// CHECK-NEXT:    func.return %[[OUT]] : tensor<1x4x4x4xf32, #graph.layout<[0, 1, 2, 3]>>

// A 2-D GEMM on the GPU is row-major: nothing to relayout.
// CHECK-LABEL: func.func @mm(
// CHECK-NOT:     graph.relayout
// CHECK:         %y = graph.kernel "gemm_0"(%x, %w, %b) {kind = "gemm"} : (tensor<16x32xf32, #graph.layout<[0, 1]>>, tensor<32x8xf32, #graph.layout<[0, 1]>>, tensor<8xf32, #graph.layout<[0]>>) -> tensor<16x8xf32, #graph.layout<[0, 1]>> {
// CHECK-NOT:     graph.relayout
// CHECK:         func.return %y : tensor<16x8xf32, #graph.layout<[0, 1]>>

// Two relayouts that undo each other cancel.
// CHECK-LABEL: func.func @chain(
// CHECK-NOT:     graph.relayout
// CHECK:         %y = graph.kernel "gemm_1"(%x, %w) {kind = "gemm"}
// CHECK-NOT:     graph.relayout
// CHECK:         func.return %y

// ---- tpu: NHWC and the innermost two physical dims tiled by (8, 128);
// rank-1 tensors by 128.

// TPU-LABEL: func.func @conv(
// TPU-NEXT:    %[[X:.*]] = graph.relayout %x : {{.*}} -> tensor<1x3x8x8xf32, #graph.layout<[0, 2, 3, 1], tile = [8, 128]>>
// TPU-NEXT:    %[[W:.*]] = graph.relayout %w : {{.*}} -> tensor<4x3x3x3xf32, #graph.layout<[0, 2, 3, 1], tile = [8, 128]>>
// TPU-NEXT:    %[[B:.*]] = graph.relayout %b : tensor<4xf32, #graph.layout<[0]>> -> tensor<4xf32, #graph.layout<[0], tile = [128]>>
// TPU-NEXT:    %[[H:.*]] = graph.kernel "conv_0"(%[[X]], %[[W]], %[[B]]) {kind = "conv"} : ({{.*}}) -> tensor<1x4x8x8xf32, #graph.layout<[0, 2, 3, 1], tile = [8, 128]>> {
// TPU:         %[[SQ:.*]] = graph.kernel "elementwise_0"(%[[H]]) {{.*}} -> tensor<1x4x8x8xf32, #graph.layout<[0, 2, 3, 1], tile = [8, 128]>> {
// TPU-NOT:     graph.relayout
// TPU:         %[[P:.*]] = graph.kernel "pool_0"(%[[SQ]]) {{.*}} -> tensor<1x4x4x4xf32, #graph.layout<[0, 2, 3, 1], tile = [8, 128]>> {
// TPU:         %[[OUT:.*]] = graph.relayout %[[P]] : tensor<1x4x4x4xf32, #graph.layout<[0, 2, 3, 1], tile = [8, 128]>> -> tensor<1x4x4x4xf32, #graph.layout<[0, 1, 2, 3]>>
// TPU-NEXT:    func.return %[[OUT]]

// TPU-LABEL: func.func @mm(
// TPU-SAME:    -> tensor<16x8xf32, #graph.layout<[0, 1]>> {
// TPU-NEXT:    %[[X:.*]] = graph.relayout %x : tensor<16x32xf32, #graph.layout<[0, 1]>> -> tensor<16x32xf32, #graph.layout<[0, 1], tile = [8, 128]>>
// TPU-NEXT:    %[[W:.*]] = graph.relayout %w : tensor<32x8xf32, #graph.layout<[0, 1]>> -> tensor<32x8xf32, #graph.layout<[0, 1], tile = [8, 128]>>
// TPU-NEXT:    %[[B:.*]] = graph.relayout %b : tensor<8xf32, #graph.layout<[0]>> -> tensor<8xf32, #graph.layout<[0], tile = [128]>>
// TPU-NEXT:    %[[Y:.*]] = graph.kernel "gemm_0"(%[[X]], %[[W]], %[[B]]) {kind = "gemm"} : (tensor<16x32xf32, #graph.layout<[0, 1], tile = [8, 128]>>, tensor<32x8xf32, #graph.layout<[0, 1], tile = [8, 128]>>, tensor<8xf32, #graph.layout<[0], tile = [128]>>) -> tensor<16x8xf32, #graph.layout<[0, 1], tile = [8, 128]>> {
// TPU-NEXT:    ^bb0(%{{.*}}: tensor<16x32xf32>, %{{.*}}: tensor<32x8xf32>, %{{.*}}: tensor<8xf32>):
// TPU:         %[[R:.*]] = graph.relayout %[[Y]] : tensor<16x8xf32, #graph.layout<[0, 1], tile = [8, 128]>> -> tensor<16x8xf32, #graph.layout<[0, 1]>>
// TPU-NEXT:    func.return %[[R]] : tensor<16x8xf32, #graph.layout<[0, 1]>>

// The [1, 0] detour is folded away: one relayout from %x straight to the tiled layout.
// TPU-LABEL: func.func @chain(
// TPU-NEXT:    %[[X:.*]] = graph.relayout %x : tensor<16x32xf32, #graph.layout<[0, 1]>> -> tensor<16x32xf32, #graph.layout<[0, 1], tile = [8, 128]>>
// TPU-NEXT:    %[[W:.*]] = graph.relayout %w : {{.*}} -> tensor<32x8xf32, #graph.layout<[0, 1], tile = [8, 128]>>
// TPU-NEXT:    %[[Y:.*]] = graph.kernel "gemm_1"(%[[X]], %[[W]])
// TPU-NOT:     #graph.layout<[1, 0]>

// ---- lpu: 320-element vectors tile the innermost physical dim.

// LPU-LABEL: func.func @conv(
// LPU-NEXT:    graph.relayout %x : {{.*}} -> tensor<1x3x8x8xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>>
// LPU:         graph.kernel "pool_0"({{.*}} -> tensor<1x4x4x4xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>> {

// LPU-LABEL: func.func @mm(
// LPU-NEXT:    %[[X:.*]] = graph.relayout %x : tensor<16x32xf32, #graph.layout<[0, 1]>> -> tensor<16x32xf32, #graph.layout<[0, 1], tile = [320]>>
// LPU-NEXT:    %[[W:.*]] = graph.relayout %w : tensor<32x8xf32, #graph.layout<[0, 1]>> -> tensor<32x8xf32, #graph.layout<[0, 1], tile = [320]>>
// LPU-NEXT:    %[[B:.*]] = graph.relayout %b : tensor<8xf32, #graph.layout<[0]>> -> tensor<8xf32, #graph.layout<[0], tile = [320]>>
// LPU-NEXT:    %[[Y:.*]] = graph.kernel "gemm_0"(%[[X]], %[[W]], %[[B]]) {{.*}} -> tensor<16x8xf32, #graph.layout<[0, 1], tile = [320]>> {
// LPU:         %[[R:.*]] = graph.relayout %[[Y]] : tensor<16x8xf32, #graph.layout<[0, 1], tile = [320]>> -> tensor<16x8xf32, #graph.layout<[0, 1]>>
// LPU-NEXT:    func.return %[[R]]

// ---- channels_last=false: every tensor logical, so no relayout at all.

// NOCL-LABEL: func.func @conv(
// NOCL-NOT:     graph.relayout
// NOCL:         graph.kernel "conv_0"(%x, %w, %b) {{.*}} -> tensor<1x4x8x8xf32, #graph.layout<[0, 1, 2, 3]>> {
// NOCL:         graph.kernel "pool_0"({{.*}} -> tensor<1x4x4x4xf32, #graph.layout<[0, 1, 2, 3]>> {
// NOCL-NOT:     graph.relayout
// NOCL:         func.return %p

// ---- tpu with tiled=false: NHWC without tiles; the GEMM needs no relayout.

// FLAT-LABEL: func.func @conv(
// FLAT-NEXT:    graph.relayout %x : {{.*}} -> tensor<1x3x8x8xf32, #graph.layout<[0, 2, 3, 1]>>
// FLAT-NEXT:    graph.relayout %w : {{.*}} -> tensor<4x3x3x3xf32, #graph.layout<[0, 2, 3, 1]>>
// FLAT-NEXT:    graph.kernel "conv_0"({{.*}}, %b)
// FLAT-LABEL: func.func @mm(
// FLAT-NOT:     graph.relayout
// FLAT:         %y = graph.kernel "gemm_0"(%x, %w, %b)
// FLAT-NOT:     tile =
// FLAT:         func.return %y
