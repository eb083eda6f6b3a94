// The collectives of every stage print and parse back; each verifier error,
// one module per case (cut out by `sed` from its `// ----- NAME` line).
// RUN: sed -n '/^\/\/ ----- roundtrip$/,/^\/\/ -----/p' %s | strata opt - --no-debuginfo | strata opt - --no-debuginfo | filecheck %s
// RUN: sed -n '/^\/\/ ----- axis$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=AXIS
// RUN: sed -n '/^\/\/ ----- devices$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=DEVICES
// RUN: sed -n '/^\/\/ ----- gather-shape$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=GSHAPE
// RUN: sed -n '/^\/\/ ----- gather-groups$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=GROUPS
// RUN: sed -n '/^\/\/ ----- reduce-shape$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=RSHAPE
// RUN: sed -n '/^\/\/ ----- scatter-shape$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=SSHAPE
// RUN: sed -n '/^\/\/ ----- scatter-divides$/,/^\/\/ -----/p' %s | not strata opt - 2>&1 | filecheck %s --check-prefix=SDIV

// ----- roundtrip
builtin.module {
  func.func @m(%x: tensor<4x6xf32>, %a: memref<4x6xf32>, %b: memref<4x12xf32>) {
    %s = graph.all_reduce %x {axis = "tp", devices = 2 : i64} : tensor<4x6xf32> -> tensor<4x6xf32>
    %g = graph.all_gather %x {axis = "dp", devices = 2 : i64, dim = 1 : i64, groups = 3 : i64} : tensor<4x6xf32> -> tensor<4x12xf32>
    loop.all_reduce %a, %a {axis = "tp", devices = 4 : i64} : memref<4x6xf32> -> memref<4x6xf32>
    loop.all_gather %a, %b {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 1 : i64} : memref<4x6xf32> -> memref<4x12xf32>
    simt.all_reduce %a, %a {axis = "tp", devices = 2 : i64} : memref<4x6xf32> -> memref<4x6xf32>
    systolic.all_gather %a, %b {axis = "dp", devices = 2 : i64, dim = 1 : i64, groups = 2 : i64} : memref<4x6xf32> -> memref<4x12xf32>
    tsp.all_reduce %a, %a {axis = "tp", devices = 8 : i64} : memref<4x6xf32> -> memref<4x6xf32>
    %r = graph.reduce_scatter %x {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : tensor<4x6xf32> -> tensor<2x6xf32>
    loop.reduce_scatter %b, %a {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 2 : i64} : memref<4x12xf32> -> memref<4x6xf32>
    simt.reduce_scatter %b, %a {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 1 : i64} : memref<4x12xf32> -> memref<4x6xf32>
    systolic.reduce_scatter %b, %a {axis = "dp", devices = 2 : i64, dim = 1 : i64, groups = 1 : i64} : memref<4x12xf32> -> memref<4x6xf32>
    tsp.reduce_scatter %b, %a {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 3 : i64} : memref<4x12xf32> -> memref<4x6xf32>
    func.return
  }
}
// CHECK:      graph.all_reduce %{{.*}} {axis = "tp", devices = 2 : i64} : tensor<4x6xf32> -> tensor<4x6xf32>
// CHECK-NEXT: graph.all_gather %{{.*}} {axis = "dp", devices = 2 : i64, dim = 1 : i64, groups = 3 : i64} : tensor<4x6xf32> -> tensor<4x12xf32>
// CHECK-NEXT: loop.all_reduce %{{.*}}, %{{.*}} {axis = "tp", devices = 4 : i64} : memref<4x6xf32> -> memref<4x6xf32>
// CHECK-NEXT: loop.all_gather %{{.*}}, %{{.*}} {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 1 : i64}
// CHECK-NEXT: simt.all_reduce
// CHECK-NEXT: systolic.all_gather
// CHECK-NEXT: tsp.all_reduce
// CHECK-NEXT: graph.reduce_scatter %{{.*}} {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : tensor<4x6xf32> -> tensor<2x6xf32>
// CHECK-NEXT: loop.reduce_scatter %{{.*}}, %{{.*}} {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 2 : i64} : memref<4x12xf32> -> memref<4x6xf32>
// CHECK-NEXT: simt.reduce_scatter
// CHECK-NEXT: systolic.reduce_scatter
// CHECK-NEXT: tsp.reduce_scatter

// ----- axis
builtin.module {
  func.func @m(%x: tensor<4x6xf32>) {
    %s = graph.all_reduce %x {axis = "pp", devices = 2 : i64} : tensor<4x6xf32> -> tensor<4x6xf32> loc("bad.model":3:5)
    func.return
  }
}
// AXIS: bad.model:3:5: error: 'graph.all_reduce' op failed to verify: 'graph.all_reduce' axis must be one of dp, tp, got 'pp'

// ----- devices
builtin.module {
  func.func @m(%a: memref<4x6xf32>) {
    loop.all_reduce %a, %a {axis = "tp", devices = 1 : i64} : memref<4x6xf32> -> memref<4x6xf32> loc("bad.model":4:1)
    func.return
  }
}
// DEVICES: bad.model:4:1: error: 'loop.all_reduce' op failed to verify: 'loop.all_reduce' runs on a group of at least 2 devices, got 1

// ----- gather-shape
builtin.module {
  func.func @m(%x: tensor<4x6xf32>) {
    %g = graph.all_gather %x {axis = "tp", devices = 2 : i64, dim = 0 : i64, groups = 1 : i64} : tensor<4x6xf32> -> tensor<4x12xf32> loc("bad.model":5:2)
    func.return
  }
}
// GSHAPE: bad.model:5:2: error: 'graph.all_gather' op failed to verify: 'graph.all_gather' result shape must be [8, 6], got [4, 12]

// ----- gather-groups
builtin.module {
  func.func @m(%a: memref<4x6xf32>, %b: memref<4x12xf32>) {
    simt.all_gather %a, %b {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 4 : i64} : memref<4x6xf32> -> memref<4x12xf32> loc("bad.model":6:3)
    func.return
  }
}
// GROUPS: bad.model:6:3: error: 'simt.all_gather' op failed to verify: 'simt.all_gather' dim 1 and groups 4 do not fit the operand shape [4, 6]

// ----- reduce-shape
builtin.module {
  func.func @m(%a: memref<4x6xf32>, %b: memref<4x12xf32>) {
    tsp.all_reduce %a, %b {axis = "tp", devices = 2 : i64} : memref<4x6xf32> -> memref<4x12xf32> loc("bad.model":7:4)
    func.return
  }
}
// RSHAPE: bad.model:7:4: error: 'tsp.all_reduce' op failed to verify: 'tsp.all_reduce' result shape must be [4, 6], got [4, 12]

// ----- scatter-shape
builtin.module {
  func.func @m(%x: tensor<4x6xf32>) {
    %r = graph.reduce_scatter %x {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 1 : i64} : tensor<4x6xf32> -> tensor<2x6xf32> loc("bad.model":8:5)
    func.return
  }
}
// SSHAPE: bad.model:8:5: error: 'graph.reduce_scatter' op failed to verify: 'graph.reduce_scatter' result shape must be [4, 3], got [2, 6]

// ----- scatter-divides
builtin.module {
  func.func @m(%a: memref<4x6xf32>, %b: memref<4x3xf32>) {
    simt.reduce_scatter %a, %b {axis = "tp", devices = 2 : i64, dim = 1 : i64, groups = 2 : i64} : memref<4x6xf32> -> memref<4x3xf32> loc("bad.model":9:6)
    func.return
  }
}
// SDIV: bad.model:9:6: error: 'simt.reduce_scatter' op failed to verify: 'simt.reduce_scatter' dim 1 and groups 2 do not fit the operand shape [4, 6] over 2 devices

// -----
