// RUN: not strata opt %s 2>&1 | filecheck %s

builtin.module {
  func.func @m(%x: tensor<4x8xf32>, %y: tensor<3xf32>) -> tensor<4x8xf32> {
    %a = graph.add %x, %y : tensor<4x8xf32>, tensor<3xf32> -> tensor<4x8xf32> loc("bad.model":7:12)
    func.return %a : tensor<4x8xf32>
  }
}

// CHECK: bad.model:7:12: error: 'graph.add' op failed to verify: shapes [4, 8] and [3] do not broadcast
