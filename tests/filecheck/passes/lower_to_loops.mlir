// RUN: strata opt %s -p 'lower-to-loops' --no-debuginfo | filecheck %s
// RUN: strata opt %s -p 'lower-to-loops' --no-debuginfo | strata opt - --no-debuginfo | filecheck %s

// Layout-stage IR whose kernels carry `tile_sizes` / `loop_order` (as `tile`
// writes them): a GEMM with a bias+relu epilogue, a bf16 GEMM, an elementwise
// kernel, causal and non-causal attention, relayouts around a kernel and a
// gather.
// The second RUN line checks that the loop IR prints and parses back.

builtin.module {
  func.func @gemm(%x: tensor<64x128xf32, #graph.layout<[0, 1]>> {graph.input = "x"}, %w: tensor<128x96xf32, #graph.layout<[0, 1]>> {graph.param = "w"}, %b: tensor<96xf32, #graph.layout<[0]>> {graph.param = "b"}) -> tensor<64x96xf32, #graph.layout<[0, 1]>> {
    %0 = graph.kernel "gemm_0"(%x, %w, %b) {tile_sizes = array<i64: 32, 32, 64>, loop_order = array<i64: 1, 0>, kind = "gemm"} : (tensor<64x128xf32, #graph.layout<[0, 1]>>, tensor<128x96xf32, #graph.layout<[0, 1]>>, tensor<96xf32, #graph.layout<[0]>>) -> tensor<64x96xf32, #graph.layout<[0, 1]>> {
    ^bb0(%x_1: tensor<64x128xf32>, %w_1: tensor<128x96xf32>, %b_1: tensor<96xf32>):
      %1 = graph.matmul %x_1, %w_1 : tensor<64x128xf32>, tensor<128x96xf32> -> tensor<64x96xf32>
      %2 = graph.add %1, %b_1 : tensor<64x96xf32>, tensor<96xf32> -> tensor<64x96xf32>
      %3 = graph.relu %2 : tensor<64x96xf32>
      graph.yield %3 : tensor<64x96xf32>
    }
    func.return %0 : tensor<64x96xf32, #graph.layout<[0, 1]>>
  }
  func.func @gemm_bf16(%x: tensor<32x64xbf16, #graph.layout<[0, 1]>> {graph.input = "x"}, %w: tensor<64x32xbf16, #graph.layout<[0, 1]>> {graph.param = "w"}) -> tensor<32x32xbf16, #graph.layout<[0, 1]>> {
    %0 = graph.kernel "gemm_1"(%x, %w) {tile_sizes = array<i64: 16, 32, 32>, loop_order = array<i64: 0, 1>, kind = "gemm"} : (tensor<32x64xbf16, #graph.layout<[0, 1]>>, tensor<64x32xbf16, #graph.layout<[0, 1]>>) -> tensor<32x32xbf16, #graph.layout<[0, 1]>> {
    ^bb0(%x_1: tensor<32x64xbf16>, %w_1: tensor<64x32xbf16>):
      %1 = graph.matmul %x_1, %w_1 : tensor<32x64xbf16>, tensor<64x32xbf16> -> tensor<32x32xbf16>
      graph.yield %1 : tensor<32x32xbf16>
    }
    func.return %0 : tensor<32x32xbf16, #graph.layout<[0, 1]>>
  }
  func.func @elementwise(%x: tensor<16x64xf32, #graph.layout<[0, 1]>> {graph.input = "x"}, %y: tensor<16x64xf32, #graph.layout<[0, 1]>> {graph.input = "y"}) -> tensor<16x64xf32, #graph.layout<[0, 1]>> {
    %0 = graph.kernel "elementwise_0"(%x, %y) {tile_sizes = array<i64: 8, 64>, loop_order = array<i64: 0, 1>, kind = "elementwise"} : (tensor<16x64xf32, #graph.layout<[0, 1]>>, tensor<16x64xf32, #graph.layout<[0, 1]>>) -> tensor<16x64xf32, #graph.layout<[0, 1]>> {
    ^bb0(%x_1: tensor<16x64xf32>, %y_1: tensor<16x64xf32>):
      %1 = graph.add %x_1, %y_1 : tensor<16x64xf32>, tensor<16x64xf32> -> tensor<16x64xf32>
      %2 = graph.relu %1 : tensor<16x64xf32>
      graph.yield %2 : tensor<16x64xf32>
    }
    func.return %0 : tensor<16x64xf32, #graph.layout<[0, 1]>>
  }
  func.func @attention_causal(%q: tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {graph.input = "q"}, %k: tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {graph.input = "k"}, %v: tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {graph.input = "v"}) -> tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {
    %0 = graph.kernel "attention_0"(%k, %q, %v) {tile_sizes = array<i64: 1, 8, 8, 8>, loop_order = array<i64: 0, 1, 2>, kind = "attention"} : (tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>, tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>, tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>) -> tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {
    ^bb0(%k_1: tensor<1x16x8xf32>, %q_1: tensor<1x16x8xf32>, %v_1: tensor<1x16x8xf32>):
      %1 = graph.constant {value = 0.35355339059327373 : f64} : tensor<f32>
      %2 = graph.transpose %k_1 {perm = array<i64: 0, 2, 1>} : tensor<1x16x8xf32> -> tensor<1x8x16xf32>
      %3 = graph.matmul %q_1, %2 : tensor<1x16x8xf32>, tensor<1x8x16xf32> -> tensor<1x16x16xf32>
      %4 = graph.mul %3, %1 : tensor<1x16x16xf32>, tensor<f32> -> tensor<1x16x16xf32>
      %5 = graph.causal_mask %4 : tensor<1x16x16xf32>
      %6 = graph.softmax %5 {axis = 2 : i64} : tensor<1x16x16xf32>
      %7 = graph.matmul %6, %v_1 : tensor<1x16x16xf32>, tensor<1x16x8xf32> -> tensor<1x16x8xf32>
      graph.yield %7 : tensor<1x16x8xf32>
    }
    func.return %0 : tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>
  }
  func.func @attention(%q: tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {graph.input = "q"}, %k: tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {graph.input = "k"}, %v: tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {graph.input = "v"}) -> tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {
    %0 = graph.kernel "attention_1"(%k, %q, %v) {tile_sizes = array<i64: 1, 8, 8, 4>, loop_order = array<i64: 0, 1, 2>, kind = "attention"} : (tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>, tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>, tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>) -> tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>> {
    ^bb0(%k_1: tensor<1x16x8xf32>, %q_1: tensor<1x16x8xf32>, %v_1: tensor<1x16x8xf32>):
      %1 = graph.constant {value = 0.35355339059327373 : f64} : tensor<f32>
      %2 = graph.transpose %k_1 {perm = array<i64: 0, 2, 1>} : tensor<1x16x8xf32> -> tensor<1x8x16xf32>
      %3 = graph.matmul %q_1, %2 : tensor<1x16x8xf32>, tensor<1x8x16xf32> -> tensor<1x16x16xf32>
      %4 = graph.mul %3, %1 : tensor<1x16x16xf32>, tensor<f32> -> tensor<1x16x16xf32>
      %5 = graph.softmax %4 {axis = 2 : i64} : tensor<1x16x16xf32>
      %6 = graph.matmul %5, %v_1 : tensor<1x16x16xf32>, tensor<1x16x8xf32> -> tensor<1x16x8xf32>
      graph.yield %6 : tensor<1x16x8xf32>
    }
    func.return %0 : tensor<1x16x8xf32, #graph.layout<[0, 1, 2]>>
  }
  func.func @relayout(%x: tensor<8x16xf32, #graph.layout<[0, 1]>> {graph.input = "x"}) -> tensor<8x16xf32, #graph.layout<[0, 1]>> {
    %0 = graph.relayout %x : tensor<8x16xf32, #graph.layout<[0, 1]>> -> tensor<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>>
    %1 = graph.kernel "elementwise_1"(%0) {tile_sizes = array<i64: 8, 16>, loop_order = array<i64: 0, 1>, kind = "elementwise"} : (tensor<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>>) -> tensor<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>> {
    ^bb0(%a: tensor<8x16xf32>):
      %2 = graph.relu %a : tensor<8x16xf32>
      graph.yield %2 : tensor<8x16xf32>
    }
    %3 = graph.relayout %1 : tensor<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>> -> tensor<8x16xf32, #graph.layout<[0, 1]>>
    func.return %3 : tensor<8x16xf32, #graph.layout<[0, 1]>>
  }
  func.func @gather(%ids: tensor<8xi32, #graph.layout<[0]>> {graph.input = "ids"}, %table: tensor<100x32xf32, #graph.layout<[0, 1]>> {graph.param = "table"}) -> tensor<8x32xf32, #graph.layout<[0, 1]>> {
    %0 = graph.kernel "gather_0"(%table, %ids) {tile_sizes = array<i64: 4, 16>, loop_order = array<i64: 0, 1>, kind = "gather"} : (tensor<100x32xf32, #graph.layout<[0, 1]>>, tensor<8xi32, #graph.layout<[0]>>) -> tensor<8x32xf32, #graph.layout<[0, 1]>> {
    ^bb0(%table_1: tensor<100x32xf32>, %ids_1: tensor<8xi32>):
      %1 = graph.gather %table_1, %ids_1 : tensor<100x32xf32>, tensor<8xi32> -> tensor<8x32xf32>
      graph.yield %1 : tensor<8x32xf32>
    }
    func.return %0 : tensor<8x32xf32, #graph.layout<[0, 1]>>
  }
}

// ---- GEMM + bias + relu, tiles 32x32 (M x N) by 64 (K), N loop outermost.
// Global buffers in their layouts; the N and M tile loops in `loop_order`; an
// f32 register accumulator carried through the K loop's iter_args; on-chip
// operand tiles at affine offsets of the induction variables (d0 = M, d1 = N,
// d2 = K); the epilogue on the finished tile, then one store.

// CHECK-LABEL: func.func @gemm(
// CHECK-SAME:    %x: memref<64x128xf32, #graph.layout<[0, 1]>, "global"> {graph.input = "x"}
// CHECK-SAME:    %w: memref<128x96xf32, #graph.layout<[0, 1]>, "global"> {graph.param = "w"}
// CHECK-SAME:    %b: memref<96xf32, #graph.layout<[0]>, "global"> {graph.param = "b"}
// CHECK-SAME:    -> memref<64x96xf32, #graph.layout<[0, 1]>, "global"> {
// CHECK-NEXT:    %[[OUT:.*]] = memref.alloc() : memref<64x96xf32, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT:    loop.kernel "gemm_0" ins(%x, %w, %b : {{.*}}) outs(%[[OUT]] : memref<64x96xf32, #graph.layout<[0, 1]>, "global">)
// CHECK-SAME:      attributes {kind = "gemm", bounds = array<i64: 64, 96, 128>, tile_sizes = array<i64: 32, 32, 64>, loop_order = array<i64: 1, 0>, ops = ["graph.matmul", "graph.add", "graph.relu"]} {
// CHECK-NEXT:    ^bb0(%[[X:[^:]+]]: memref<64x128xf32, {{.*}}>, %[[W:[^:]+]]: memref<128x96xf32, {{.*}}>, %[[B:[^:]+]]: memref<96xf32, {{.*}}>, %[[Y:[^:]+]]: memref<64x96xf32, {{.*}}>):
// CHECK-NEXT:      %[[ZERO:.*]] = arith.constant 0 : index
// CHECK-NEXT:      %[[LB_N:.*]] = arith.constant 0 : index
// CHECK-NEXT:      %[[UB_N:.*]] = arith.constant 96 : index
// CHECK-NEXT:      %[[ST_N:.*]] = arith.constant 32 : index
// CHECK-NEXT:      scf.for %[[J:[^ ]+]] = %[[LB_N]] to %[[UB_N]] step %[[ST_N]] {
// CHECK-NEXT:        arith.constant 0 : index
// CHECK-NEXT:        %[[UB_M:.*]] = arith.constant 64 : index
// CHECK-NEXT:        %[[ST_M:.*]] = arith.constant 32 : index
// CHECK-NEXT:        scf.for %[[I:[^ ]+]] = %{{[^ ]+}} to %[[UB_M]] step %[[ST_M]] {
// CHECK-NEXT:          %[[INIT:.*]] = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<32x32xf32>
// CHECK-NEXT:          arith.constant 0 : index
// CHECK-NEXT:          %[[UB_K:.*]] = arith.constant 128 : index
// CHECK-NEXT:          %[[ST_K:.*]] = arith.constant 64 : index
// CHECK-NEXT:          %[[SUM:[^ ]+]] = scf.for %[[KK:[^ ]+]] = %{{[^ ]+}} to %[[UB_K]] step %[[ST_K]] iter_args(%[[ACC:[^ ]+]] = %[[INIT]]) -> (tensor<32x32xf32>) {
// CHECK-NEXT:            %[[A:.*]] = loop.load %[[X]][%[[I]], %[[J]], %[[KK]]] {map = affine_map<(d0, d1, d2) -> (d0, d2)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<64x128xf32, #graph.layout<[0, 1]>, "global"> -> tensor<32x64xf32>
// CHECK-NEXT:            %[[BT:.*]] = loop.load %[[W]][%[[I]], %[[J]], %[[KK]]] {map = affine_map<(d0, d1, d2) -> (d2, d1)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<128x96xf32, #graph.layout<[0, 1]>, "global"> -> tensor<64x32xf32>
// CHECK-NEXT:            %[[P:.*]] = graph.matmul %[[A]], %[[BT]] : tensor<32x64xf32>, tensor<64x32xf32> -> tensor<32x32xf32>
// CHECK-NEXT:            %[[NEXT:.*]] = graph.add %[[ACC]], %[[P]] : tensor<32x32xf32>, tensor<32x32xf32> -> tensor<32x32xf32>
// CHECK-NEXT:            scf.yield %[[NEXT]] : tensor<32x32xf32>
// CHECK-NEXT:          } {loop.dim = 2 : i64}
// CHECK-NEXT:          %[[BIAS:.*]] = loop.load %[[B]][%[[I]], %[[J]], %[[ZERO]]] {map = affine_map<(d0, d1, d2) -> (d1)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<96xf32, #graph.layout<[0]>, "global"> -> tensor<32xf32>
// CHECK-NEXT:          %[[T:.*]] = graph.add %[[SUM]], %[[BIAS]] : tensor<32x32xf32>, tensor<32xf32> -> tensor<32x32xf32>
// CHECK-NEXT:          %[[R:.*]] = graph.relu %[[T]] : tensor<32x32xf32>
// CHECK-NEXT:          loop.store %[[R]], %[[Y]][%[[I]], %[[J]], %[[ZERO]]] {map = affine_map<(d0, d1, d2) -> (d0, d1)>} : tensor<32x32xf32> -> memref<64x96xf32, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT:        } {loop.dim = 0 : i64}
// CHECK-NEXT:      } {loop.dim = 1 : i64}
// CHECK-NEXT:      loop.end
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[OUT]] : memref<64x96xf32, #graph.layout<[0, 1]>, "global">

// ---- bf16 GEMM: tiles are cast up to f32 for the matmul, the f32
// accumulator is cast back once. N (32) is whole: no loop over it.

// CHECK-LABEL: func.func @gemm_bf16(
// CHECK:         loop.kernel "gemm_1" {{.*}} attributes {kind = "gemm", bounds = array<i64: 32, 32, 64>, tile_sizes = array<i64: 16, 32, 32>,
// CHECK:         scf.for %[[I:[^ ]+]] = {{.*}} {
// CHECK-NEXT:      %[[INIT:.*]] = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<16x32xf32>
// CHECK:           %[[SUM:[^ ]+]] = scf.for {{.*}} iter_args(%[[ACC:[^ ]+]] = %[[INIT]]) -> (tensor<16x32xf32>) {
// CHECK-NEXT:        %[[A:.*]] = loop.load {{.*}} -> tensor<16x32xbf16>
// CHECK-NEXT:        %[[A32:.*]] = graph.cast %[[A]] : tensor<16x32xbf16> -> tensor<16x32xf32>
// CHECK-NEXT:        %[[B:.*]] = loop.load {{.*}} -> tensor<32x32xbf16>
// CHECK-NEXT:        %[[B32:.*]] = graph.cast %[[B]] : tensor<32x32xbf16> -> tensor<32x32xf32>
// CHECK-NEXT:        %[[P:.*]] = graph.matmul %[[A32]], %[[B32]] : tensor<16x32xf32>, tensor<32x32xf32> -> tensor<16x32xf32>
// CHECK-NEXT:        %[[NEXT:.*]] = graph.add %[[ACC]], %[[P]]
// CHECK-NEXT:        scf.yield %[[NEXT]] : tensor<16x32xf32>
// CHECK-NEXT:      } {loop.dim = 2 : i64}
// CHECK-NEXT:      %[[OUT:.*]] = graph.cast %[[SUM]] : tensor<16x32xf32> -> tensor<16x32xbf16>
// CHECK-NEXT:      loop.store %[[OUT]], {{.*}} : tensor<16x32xbf16> -> memref<32x32xbf16, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT:    } {loop.dim = 0 : i64}
// CHECK-NEXT:    loop.end

// ---- elementwise: one loop over row tiles (the columns are whole), a load
// per operand, the ops on the tile, a store.

// CHECK-LABEL: func.func @elementwise(
// CHECK:         loop.kernel "elementwise_0" ins(%x, %y : {{.*}}) outs(%{{.*}} : {{.*}}) attributes {kind = "elementwise", bounds = array<i64: 16, 64>, tile_sizes = array<i64: 8, 64>, loop_order = array<i64: 0, 1>, ops = ["graph.add", "graph.relu"]} {
// CHECK-NEXT:    ^bb0(%[[X:[^:]+]]: {{.*}}, %[[Y:[^:]+]]: {{.*}}, %[[O:[^:]+]]: {{.*}}):
// CHECK-NEXT:      %[[ZERO:.*]] = arith.constant 0 : index
// CHECK-NEXT:      arith.constant 0 : index
// CHECK-NEXT:      arith.constant 16 : index
// CHECK-NEXT:      arith.constant 8 : index
// CHECK-NEXT:      scf.for %[[I:[^ ]+]] = {{.*}} {
// CHECK-NEXT:        %[[A:.*]] = loop.load %[[X]][%[[I]], %[[ZERO]]] {map = affine_map<(d0, d1) -> (d0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x64xf32, #graph.layout<[0, 1]>, "global"> -> tensor<8x64xf32>
// CHECK-NEXT:        %[[B:.*]] = loop.load %[[Y]][%[[I]], %[[ZERO]]] {map = affine_map<(d0, d1) -> (d0, 0)>, level = "onchip", pad = 0.000000e+00 : f64} : memref<16x64xf32, #graph.layout<[0, 1]>, "global"> -> tensor<8x64xf32>
// CHECK-NEXT:        %[[S:.*]] = graph.add %[[A]], %[[B]] : tensor<8x64xf32>, tensor<8x64xf32> -> tensor<8x64xf32>
// CHECK-NEXT:        %[[R:.*]] = graph.relu %[[S]] : tensor<8x64xf32>
// CHECK-NEXT:        loop.store %[[R]], %[[O]][%[[I]], %[[ZERO]]] {map = affine_map<(d0, d1) -> (d0, 0)>} : tensor<8x64xf32> -> memref<16x64xf32, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT:      } {loop.dim = 0 : i64}
// CHECK-NEXT:      loop.end

// ---- causal attention: a loop over query tiles around a key loop (dim 3)
// carrying the running max, sum and output in registers; the key loop ends
// at the query tile's diagonal, min(16, i + 8), since later key tiles are
// wholly masked; the score tile is masked at its position and fed to
// loop.online_softmax, so the 16x16 score matrix never exists; the output
// tile is acc / sum.

// CHECK-LABEL: func.func @attention_causal(
// CHECK:         loop.kernel "attention_0" ins(%k, %q, %v : {{.*}}) outs({{.*}}) attributes {kind = "attention", bounds = array<i64: 1, 16, 8, 16>, tile_sizes = array<i64: 1, 8, 8, 8>, loop_order = array<i64: 0, 1, 2>,
// CHECK-NEXT:    ^bb0(%[[K:[^:]+]]: {{.*}}, %[[Q:[^:]+]]: {{.*}}, %[[V:[^:]+]]: {{.*}}, %[[O:[^:]+]]: {{.*}}):
// CHECK-NEXT:      %[[ZERO:.*]] = arith.constant 0 : index
// CHECK:           scf.for %[[I:[^ ]+]] = {{.*}} {
// CHECK-NEXT:        %[[M0:.*]] = loop.fill {value = 0xfff0000000000000 : f64, level = "register"} : tensor<1x8x1xf32>
// CHECK-NEXT:        %[[L0:.*]] = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<1x8x1xf32>
// CHECK-NEXT:        %[[A0:.*]] = loop.fill {value = 0.000000e+00 : f64, level = "register"} : tensor<1x8x8xf32>
// CHECK-NEXT:        %[[REACH:.*]] = arith.constant 8 : index
// CHECK-NEXT:        %[[END:.*]] = arith.addi %[[I]], %[[REACH]] : index
// CHECK-NEXT:        %[[KEYS:.*]] = arith.constant 16 : index
// CHECK-NEXT:        %[[UB:.*]] = arith.minsi %[[END]], %[[KEYS]] : index
// CHECK-NEXT:        arith.constant 0 : index
// CHECK-NEXT:        %[[KSTEP:.*]] = arith.constant 8 : index
// CHECK-NEXT:        %{{[^ ]+}}, %[[L:[^ ]+]], %[[ACC:[^ ]+]] = scf.for %[[J:[^ ]+]] = %{{[^ ]+}} to %[[UB]] step %[[KSTEP]] iter_args(%[[M:[^ ]+]] = %[[M0]], %[[LS:[^ ]+]] = %[[L0]], %[[AC:[^ ]+]] = %[[A0]]) -> (tensor<1x8x1xf32>, tensor<1x8x1xf32>, tensor<1x8x8xf32>) {
// CHECK-NEXT:          %[[QT:.*]] = loop.load %[[Q]][%[[ZERO]], %[[I]], %[[ZERO]], %[[J]]] {map = affine_map<(d0, d1, d2, d3) -> (0, d1, 0)>, level = "onchip"{{.*}} -> tensor<1x8x8xf32>
// CHECK-NEXT:          %[[KT:.*]] = loop.load %[[K]][%[[ZERO]], %[[I]], %[[ZERO]], %[[J]]] {map = affine_map<(d0, d1, d2, d3) -> (0, d3, 0)>, level = "onchip"{{.*}} -> tensor<1x8x8xf32>
// CHECK-NEXT:          %[[KTT:.*]] = graph.transpose %[[KT]]
// CHECK-NEXT:          %[[S:.*]] = graph.matmul %[[QT]], %[[KTT]]
// CHECK-NEXT:          %[[SCALE:.*]] = graph.constant
// CHECK-NEXT:          %[[SS:.*]] = graph.mul %[[S]], %[[SCALE]]
// CHECK-NEXT:          %[[MASKED:.*]] = loop.causal_mask %[[SS]][%[[ZERO]], %[[I]], %[[ZERO]], %[[J]]] {map = affine_map<(d0, d1, d2, d3) -> (d1, d3)>} : tensor<1x8x8xf32> -> tensor<1x8x8xf32>
// CHECK-NEXT:          %[[VT:.*]] = loop.load %[[V]][%[[ZERO]], %[[I]], %[[ZERO]], %[[J]]] {map = affine_map<(d0, d1, d2, d3) -> (0, d3, 0)>, level = "onchip"{{.*}} -> tensor<1x8x8xf32>
// CHECK-NEXT:          %[[M1:[^ ]+]], %[[L1:[^ ]+]], %[[A1:[^ ]+]] = loop.online_softmax %[[MASKED]], %[[VT]], %[[M]], %[[LS]], %[[AC]] : tensor<1x8x8xf32>, tensor<1x8x8xf32>, tensor<1x8x1xf32>, tensor<1x8x1xf32>, tensor<1x8x8xf32>
// CHECK-NEXT:          scf.yield %[[M1]], %[[L1]], %[[A1]] : tensor<1x8x1xf32>, tensor<1x8x1xf32>, tensor<1x8x8xf32>
// CHECK-NEXT:        } {loop.dim = 3 : i64}
// CHECK-NEXT:        %[[RES:.*]] = graph.div %[[ACC]], %[[L]] : tensor<1x8x8xf32>, tensor<1x8x1xf32> -> tensor<1x8x8xf32>
// CHECK-NEXT:        loop.store %[[RES]], %[[O]][%[[ZERO]], %[[I]], %[[ZERO]], %[[ZERO]]] {map = affine_map<(d0, d1, d2, d3) -> (0, d1, 0)>} : tensor<1x8x8xf32> -> memref<1x16x8xf32, #graph.layout<[0, 1, 2]>, "global">
// CHECK-NEXT:      } {loop.dim = 1 : i64}
// CHECK-NEXT:      loop.end

// ---- attention without a mask, 4 keys a step: the scaled scores go straight
// to loop.online_softmax.

// CHECK-LABEL: func.func @attention(
// CHECK:         loop.kernel "attention_1" {{.*}} tile_sizes = array<i64: 1, 8, 8, 4>,
// CHECK:           scf.for {{.*}} iter_args({{.*}}) -> (tensor<1x8x1xf32>, tensor<1x8x1xf32>, tensor<1x8x8xf32>) {
// CHECK-NOT:         loop.causal_mask
// CHECK:             %[[SS:.*]] = graph.mul {{.*}} -> tensor<1x8x4xf32>
// CHECK-NEXT:        %[[VT:.*]] = loop.load {{.*}} -> tensor<1x4x8xf32>
// CHECK-NEXT:        loop.online_softmax %[[SS]], %[[VT]], {{.*}} : tensor<1x8x4xf32>, tensor<1x4x8xf32>, tensor<1x8x1xf32>, tensor<1x8x1xf32>, tensor<1x8x8xf32>
// CHECK:           } {loop.dim = 3 : i64}
// CHECK:         loop.end

// ---- relayouts become a fresh global buffer and a loop.copy between layouts;
// the kernel reads and writes the (1, 0)-ordered, (8, 128)-tiled buffers.

// CHECK-LABEL: func.func @relayout(%x: memref<8x16xf32, #graph.layout<[0, 1]>, "global"> {graph.input = "x"}) -> memref<8x16xf32, #graph.layout<[0, 1]>, "global"> {
// CHECK-NEXT:    %[[T:.*]] = memref.alloc() : memref<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>, "global">
// CHECK-NEXT:    loop.copy %x, %[[T]] : memref<8x16xf32, #graph.layout<[0, 1]>, "global"> -> memref<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>, "global">
// CHECK-NEXT:    %[[R:.*]] = memref.alloc() : memref<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>, "global">
// CHECK-NEXT:    loop.kernel "elementwise_1" ins(%[[T]] : memref<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>, "global">) outs(%[[R]] : memref<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>, "global">)
// CHECK-NOT:       scf.for
// CHECK:           loop.end
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[BACK:.*]] = memref.alloc() : memref<8x16xf32, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT:    loop.copy %[[R]], %[[BACK]] : memref<8x16xf32, #graph.layout<[1, 0], tile = [8, 128]>, "global"> -> memref<8x16xf32, #graph.layout<[0, 1]>, "global">
// CHECK-NEXT:    func.return %[[BACK]] : memref<8x16xf32, #graph.layout<[0, 1]>, "global">

// ---- gather: each tile loads its 4 ids, then reads only the 4 table rows
// they select (16 columns at a time) with loop.gather, not the 100-row table.

// CHECK-LABEL: func.func @gather(
// CHECK:         loop.kernel "gather_0" ins(%table, %ids : {{.*}}) outs({{.*}}) attributes {kind = "gather", bounds = array<i64: 8, 32>, tile_sizes = array<i64: 4, 16>,
// CHECK-NEXT:    ^bb0(%[[T:[^:]+]]: {{.*}}, %[[IDS:[^:]+]]: {{.*}}, %[[O:[^:]+]]: {{.*}}):
// CHECK:           scf.for %[[I:[^ ]+]] = {{.*}} {
// CHECK:             scf.for %[[J:[^ ]+]] = {{.*}} {
// CHECK-NEXT:          %[[IT:.*]] = loop.load %[[IDS]][%[[I]], %[[J]]] {map = affine_map<(d0, d1) -> (d0)>, level = "onchip"{{.*}} -> tensor<4xi32>
// CHECK-NEXT:          %[[ROWS:.*]] = loop.gather %[[T]][%[[I]], %[[J]]] by %[[IT]] {map = affine_map<(d0, d1) -> (d1)>, pad = 0.000000e+00 : f64} : memref<100x32xf32, #graph.layout<[0, 1]>, "global">, tensor<4xi32> -> tensor<4x16xf32>
// CHECK-NEXT:          loop.store %[[ROWS]], %[[O]][%[[I]], %[[J]]]
