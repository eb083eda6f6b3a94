// Replay with: strata opt strata-reproducer.mlir -p 'tile{target="lpu"}'
builtin.module attributes {strata.target = "lpu"} {
  func.func @vit(%image: tensor<1x3x32x32xf32, #graph.layout<[0, 1, 2, 3]>> {graph.input = "image"} loc(unknown), %patch_w: tensor<48x3x8x8xf32, #graph.layout<[0, 1, 2, 3]>> {graph.param = "patch_w"} loc(unknown), %patch_b: tensor<48xf32, #graph.layout<[0]>> {graph.param = "patch_b"} loc(unknown), %cls: tensor<1x1x48xf32, #graph.layout<[0, 1, 2]>> {graph.param = "cls"} loc(unknown), %pos: tensor<1x17x48xf32, #graph.layout<[0, 1, 2]>> {graph.param = "pos"} loc(unknown), %encoder.0.ln1_g: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.0.ln1_g"} loc(unknown), %encoder.0.ln1_b: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.0.ln1_b"} loc(unknown), %encoder.0.w_qkv: tensor<48x144xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.0.w_qkv"} loc(unknown), %encoder.0.b_qkv: tensor<144xf32, #graph.layout<[0]>> {graph.param = "encoder.0.b_qkv"} loc(unknown), %encoder.0.w_o: tensor<48x48xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.0.w_o"} loc(unknown), %encoder.0.b_o: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.0.b_o"} loc(unknown), %encoder.0.ln2_g: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.0.ln2_g"} loc(unknown), %encoder.0.ln2_b: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.0.ln2_b"} loc(unknown), %encoder.0.w1: tensor<48x192xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.0.w1"} loc(unknown), %encoder.0.b1: tensor<192xf32, #graph.layout<[0]>> {graph.param = "encoder.0.b1"} loc(unknown), %encoder.0.w2: tensor<192x48xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.0.w2"} loc(unknown), %encoder.0.b2: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.0.b2"} loc(unknown), %encoder.1.ln1_g: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.1.ln1_g"} loc(unknown), %encoder.1.ln1_b: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.1.ln1_b"} loc(unknown), %encoder.1.w_qkv: tensor<48x144xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.1.w_qkv"} loc(unknown), %encoder.1.b_qkv: tensor<144xf32, #graph.layout<[0]>> {graph.param = "encoder.1.b_qkv"} loc(unknown), %encoder.1.w_o: tensor<48x48xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.1.w_o"} loc(unknown), %encoder.1.b_o: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.1.b_o"} loc(unknown), %encoder.1.ln2_g: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.1.ln2_g"} loc(unknown), %encoder.1.ln2_b: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.1.ln2_b"} loc(unknown), %encoder.1.w1: tensor<48x192xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.1.w1"} loc(unknown), %encoder.1.b1: tensor<192xf32, #graph.layout<[0]>> {graph.param = "encoder.1.b1"} loc(unknown), %encoder.1.w2: tensor<192x48xf32, #graph.layout<[0, 1]>> {graph.param = "encoder.1.w2"} loc(unknown), %encoder.1.b2: tensor<48xf32, #graph.layout<[0]>> {graph.param = "encoder.1.b2"} loc(unknown), %ln_g: tensor<48xf32, #graph.layout<[0]>> {graph.param = "ln_g"} loc(unknown), %ln_b: tensor<48xf32, #graph.layout<[0]>> {graph.param = "ln_b"} loc(unknown), %head_w: tensor<48x10xf32, #graph.layout<[0, 1]>> {graph.param = "head_w"} loc(unknown), %head_b: tensor<10xf32, #graph.layout<[0]>> {graph.param = "head_b"} loc(unknown)) -> tensor<1x10xf32, #graph.layout<[0, 1]>> {
    %0 = graph.relayout %image : tensor<1x3x32x32xf32, #graph.layout<[0, 1, 2, 3]>> -> tensor<1x3x32x32xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>> loc("samples/vit.model":42:7)
    %1 = graph.relayout %patch_w : tensor<48x3x8x8xf32, #graph.layout<[0, 1, 2, 3]>> -> tensor<48x3x8x8xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>> loc("samples/vit.model":42:7)
    %2 = graph.relayout %patch_b : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":42:7)
    %x = graph.kernel "conv_0"(%0, %1, %2) {kind = "conv"} : (tensor<1x3x32x32xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>>, tensor<48x3x8x8xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x48x4x4xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>> {
    ^bb0(%image_1: tensor<1x3x32x32xf32> loc(unknown), %patch_w_1: tensor<48x3x8x8xf32> loc(unknown), %patch_b_1: tensor<48xf32> loc(unknown)):
      %x_1 = graph.conv2d %image_1, %patch_w_1 bias %patch_b_1 : tensor<48xf32> {strides = array<i64: 8, 8>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : tensor<1x3x32x32xf32>, tensor<48x3x8x8xf32> -> tensor<1x48x4x4xf32> loc("samples/vit.model":42:7)
      graph.yield %x_1 : tensor<1x48x4x4xf32> loc("samples/vit.model":42:7)
    } loc("samples/vit.model":42:7)
    %3 = graph.relayout %x : tensor<1x48x4x4xf32, #graph.layout<[0, 2, 3, 1], tile = [320]>> -> tensor<1x48x4x4xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> loc(fused["samples/vit.model":43:17, "samples/vit.model":43:7])
    %x_1 = graph.kernel "copy_0"(%3) {kind = "copy"} : (tensor<1x48x4x4xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>) -> tensor<1x16x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_2: tensor<1x48x4x4xf32> loc(unknown)):
      %4 = graph.reshape %x_2 : tensor<1x48x4x4xf32> -> tensor<1x48x16xf32> loc("samples/vit.model":43:17)
      %x_3 = graph.transpose %4 {perm = array<i64: 0, 2, 1>} : tensor<1x48x16xf32> -> tensor<1x16x48xf32> loc("samples/vit.model":43:7)
      graph.yield %x_3 : tensor<1x16x48xf32> loc("samples/vit.model":43:7)
    } loc(fused["samples/vit.model":43:17, "samples/vit.model":43:7])
    %4 = graph.relayout %cls : tensor<1x1x48xf32, #graph.layout<[0, 1, 2]>> -> tensor<1x1x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> loc(fused["samples/vit.model":46:11, "samples/vit.model":46:44, "samples/vit.model":46:50])
    %cls_b = graph.kernel "elementwise_0"(%x_1, %4) {kind = "elementwise"} : (tensor<1x16x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<1x1x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>) -> tensor<1x1x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_2: tensor<1x16x48xf32> loc(unknown), %cls_1: tensor<1x1x48xf32> loc(unknown)):
      %5 = graph.constant {value = 0.000000e+00 : f64} : tensor<f32> loc("samples/vit.model":46:44)
      %6 = graph.slice %x_2 {axis = 1 : i64, start = 0 : i64, end = 1 : i64} : tensor<1x16x48xf32> -> tensor<1x1x48xf32> loc("samples/vit.model":46:11)
      %7 = graph.mul %6, %5 : tensor<1x1x48xf32>, tensor<f32> -> tensor<1x1x48xf32> loc("samples/vit.model":46:44)
      %cls_b_1 = graph.add %7, %cls_1 : tensor<1x1x48xf32>, tensor<1x1x48xf32> -> tensor<1x1x48xf32> loc("samples/vit.model":46:50)
      graph.yield %cls_b_1 : tensor<1x1x48xf32> loc("samples/vit.model":46:50)
    } loc(fused["samples/vit.model":46:11, "samples/vit.model":46:44, "samples/vit.model":46:50])
    %5 = graph.relayout %pos : tensor<1x17x48xf32, #graph.layout<[0, 1, 2]>> -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> loc(fused["samples/vit.model":47:7, "samples/vit.model":47:34])
    %x_2 = graph.kernel "copy_1"(%cls_b, %x_1, %5) {kind = "copy"} : (tensor<1x1x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<1x16x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%cls_b_1: tensor<1x1x48xf32> loc(unknown), %x_3: tensor<1x16x48xf32> loc(unknown), %pos_1: tensor<1x17x48xf32> loc(unknown)):
      %6 = graph.concat %cls_b_1, %x_3 {axis = 1 : i64} : tensor<1x1x48xf32>, tensor<1x16x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":47:7)
      %x_4 = graph.add %6, %pos_1 : tensor<1x17x48xf32>, tensor<1x17x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":47:34)
      graph.yield %x_4 : tensor<1x17x48xf32> loc("samples/vit.model":47:34)
    } loc(fused["samples/vit.model":47:7, "samples/vit.model":47:34])
    %6 = graph.relayout %encoder.0.ln1_g : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":27:19)
    %7 = graph.relayout %encoder.0.ln1_b : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":27:19)
    %8 = graph.kernel "row_0"(%x_2, %6, %7) {kind = "row"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_3: tensor<1x17x48xf32> loc(unknown), %encoder.0.ln1_g_1: tensor<48xf32> loc(unknown), %encoder.0.ln1_b_1: tensor<48xf32> loc(unknown)):
      %9 = graph.layernorm %x_3 scale %encoder.0.ln1_g_1 : tensor<48xf32> bias %encoder.0.ln1_b_1 : tensor<48xf32> {axis = 2 : i64, epsilon = 1.000000e-06 : f64} : tensor<1x17x48xf32> loc("samples/vit.model":27:19)
      graph.yield %9 : tensor<1x17x48xf32> loc("samples/vit.model":27:19)
    } loc("samples/vit.model":27:19)
    %9 = graph.relayout %encoder.0.w_qkv : tensor<48x144xf32, #graph.layout<[0, 1]>> -> tensor<48x144xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":27:56, "samples/vit.model":27:64])
    %10 = graph.relayout %encoder.0.b_qkv : tensor<144xf32, #graph.layout<[0]>> -> tensor<144xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":27:56, "samples/vit.model":27:64])
    %11 = graph.kernel "gemm_0"(%8, %9, %10) {kind = "gemm"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48x144xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<144xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x144xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%12: tensor<1x17x48xf32> loc(unknown), %encoder.0.w_qkv_1: tensor<48x144xf32> loc(unknown), %encoder.0.b_qkv_1: tensor<144xf32> loc(unknown)):
      %13 = graph.matmul %12, %encoder.0.w_qkv_1 : tensor<1x17x48xf32>, tensor<48x144xf32> -> tensor<1x17x144xf32> loc("samples/vit.model":27:56)
      %14 = graph.add %13, %encoder.0.b_qkv_1 : tensor<1x17x144xf32>, tensor<144xf32> -> tensor<1x17x144xf32> loc("samples/vit.model":27:64)
      graph.yield %14 : tensor<1x17x144xf32> loc("samples/vit.model":27:64)
    } loc(fused["samples/vit.model":27:56, "samples/vit.model":27:64])
    %12 = graph.kernel "gemm_1"(%11) {kind = "gemm"} : (tensor<1x17x144xf32, #graph.layout<[0, 1, 2], tile = [320]>>) -> tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> {
    ^bb0(%13: tensor<1x17x144xf32> loc(unknown)):
      %14 = graph.constant {value = 0.28867513459481292 : f64} : tensor<f32> loc("samples/vit.model":31:25)
      %q = graph.slice %13 {axis = 2 : i64, start = 0 : i64, end = 48 : i64} : tensor<1x17x144xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":27:13)
      %k = graph.slice %13 {axis = 2 : i64, start = 48 : i64, end = 96 : i64} : tensor<1x17x144xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":27:13)
      %15 = graph.reshape %q : tensor<1x17x48xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":28:17)
      %q_1 = graph.transpose %15 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x17x4x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":28:7)
      %16 = graph.reshape %k : tensor<1x17x48xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":29:17)
      %k_1 = graph.transpose %16 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x17x4x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":29:7)
      %17 = graph.transpose %k_1 {perm = array<i64: 0, 1, 3, 2>} : tensor<1x4x17x12xf32> -> tensor<1x4x12x17xf32> loc("samples/vit.model":31:25)
      %18 = graph.matmul %q_1, %17 : tensor<1x4x17x12xf32>, tensor<1x4x12x17xf32> -> tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
      %19 = graph.mul %18, %14 : tensor<1x4x17x17xf32>, tensor<f32> -> tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
      graph.yield %19 : tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
    } loc(fused["samples/vit.model":27:13, "samples/vit.model":28:17, "samples/vit.model":28:7, "samples/vit.model":29:17, "samples/vit.model":29:7, "samples/vit.model":31:25])
    %13 = graph.kernel "row_1"(%12) {kind = "row"} : (tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>) -> tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> {
    ^bb0(%14: tensor<1x4x17x17xf32> loc(unknown)):
      %15 = graph.softmax %14 {axis = 3 : i64} : tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
      graph.yield %15 : tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
    } loc("samples/vit.model":31:25)
    %14 = graph.kernel "gemm_2"(%11, %13) {kind = "gemm"} : (tensor<1x17x144xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>) -> tensor<1x4x17x12xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> {
    ^bb0(%15: tensor<1x17x144xf32> loc(unknown), %16: tensor<1x4x17x17xf32> loc(unknown)):
      %v = graph.slice %15 {axis = 2 : i64, start = 96 : i64, end = 144 : i64} : tensor<1x17x144xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":27:13)
      %17 = graph.reshape %v : tensor<1x17x48xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":30:17)
      %v_1 = graph.transpose %17 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x17x4x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":30:7)
      %18 = graph.matmul %16, %v_1 : tensor<1x4x17x17xf32>, tensor<1x4x17x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":31:25)
      graph.yield %18 : tensor<1x4x17x12xf32> loc("samples/vit.model":31:25)
    } loc(fused["samples/vit.model":27:13, "samples/vit.model":30:17, "samples/vit.model":30:7, "samples/vit.model":31:25])
    %15 = graph.relayout %encoder.0.w_o : tensor<48x48xf32, #graph.layout<[0, 1]>> -> tensor<48x48xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":31:15, "samples/vit.model":31:7, "samples/vit.model":32:13, "samples/vit.model":32:9, "samples/vit.model":32:19])
    %16 = graph.relayout %encoder.0.b_o : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":31:15, "samples/vit.model":31:7, "samples/vit.model":32:13, "samples/vit.model":32:9, "samples/vit.model":32:19])
    %x_3 = graph.kernel "gemm_3"(%14, %15, %x_2, %16) {kind = "gemm"} : (tensor<1x4x17x12xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>, tensor<48x48xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%17: tensor<1x4x17x12xf32> loc(unknown), %encoder.0.w_o_1: tensor<48x48xf32> loc(unknown), %x_4: tensor<1x17x48xf32> loc(unknown), %encoder.0.b_o_1: tensor<48xf32> loc(unknown)):
      %18 = graph.transpose %17 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x4x17x12xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":31:15)
      %o = graph.reshape %18 : tensor<1x17x4x12xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":31:7)
      %19 = graph.matmul %o, %encoder.0.w_o_1 : tensor<1x17x48xf32>, tensor<48x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":32:13)
      %20 = graph.add %x_4, %19 : tensor<1x17x48xf32>, tensor<1x17x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":32:9)
      %x_5 = graph.add %20, %encoder.0.b_o_1 : tensor<1x17x48xf32>, tensor<48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":32:19)
      graph.yield %x_5 : tensor<1x17x48xf32> loc("samples/vit.model":32:19)
    } loc(fused["samples/vit.model":31:15, "samples/vit.model":31:7, "samples/vit.model":32:13, "samples/vit.model":32:9, "samples/vit.model":32:19])
    %17 = graph.relayout %encoder.0.ln2_g : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":33:12)
    %18 = graph.relayout %encoder.0.ln2_b : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":33:12)
    %19 = graph.kernel "row_2"(%x_3, %17, %18) {kind = "row"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_4: tensor<1x17x48xf32> loc(unknown), %encoder.0.ln2_g_1: tensor<48xf32> loc(unknown), %encoder.0.ln2_b_1: tensor<48xf32> loc(unknown)):
      %20 = graph.layernorm %x_4 scale %encoder.0.ln2_g_1 : tensor<48xf32> bias %encoder.0.ln2_b_1 : tensor<48xf32> {axis = 2 : i64, epsilon = 1.000000e-06 : f64} : tensor<1x17x48xf32> loc("samples/vit.model":33:12)
      graph.yield %20 : tensor<1x17x48xf32> loc("samples/vit.model":33:12)
    } loc("samples/vit.model":33:12)
    %20 = graph.relayout %encoder.0.w1 : tensor<48x192xf32, #graph.layout<[0, 1]>> -> tensor<48x192xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":33:49, "samples/vit.model":33:54, "samples/vit.model":33:7])
    %21 = graph.relayout %encoder.0.b1 : tensor<192xf32, #graph.layout<[0]>> -> tensor<192xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":33:49, "samples/vit.model":33:54, "samples/vit.model":33:7])
    %h = graph.kernel "gemm_4"(%19, %20, %21) {kind = "gemm"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48x192xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<192xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x192xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%22: tensor<1x17x48xf32> loc(unknown), %encoder.0.w1_1: tensor<48x192xf32> loc(unknown), %encoder.0.b1_1: tensor<192xf32> loc(unknown)):
      %23 = graph.matmul %22, %encoder.0.w1_1 : tensor<1x17x48xf32>, tensor<48x192xf32> -> tensor<1x17x192xf32> loc("samples/vit.model":33:49)
      %24 = graph.add %23, %encoder.0.b1_1 : tensor<1x17x192xf32>, tensor<192xf32> -> tensor<1x17x192xf32> loc("samples/vit.model":33:54)
      %h_1 = graph.gelu %24 : tensor<1x17x192xf32> loc("samples/vit.model":33:7)
      graph.yield %h_1 : tensor<1x17x192xf32> loc("samples/vit.model":33:7)
    } loc(fused["samples/vit.model":33:49, "samples/vit.model":33:54, "samples/vit.model":33:7])
    %22 = graph.relayout %encoder.0.w2 : tensor<192x48xf32, #graph.layout<[0, 1]>> -> tensor<192x48xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":34:16, "samples/vit.model":34:12, "samples/vit.model":34:21])
    %23 = graph.relayout %encoder.0.b2 : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":34:16, "samples/vit.model":34:12, "samples/vit.model":34:21])
    %x_4 = graph.kernel "gemm_5"(%h, %22, %x_3, %23) {kind = "gemm"} : (tensor<1x17x192xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<192x48xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%h_1: tensor<1x17x192xf32> loc(unknown), %encoder.0.w2_1: tensor<192x48xf32> loc(unknown), %x_5: tensor<1x17x48xf32> loc(unknown), %encoder.0.b2_1: tensor<48xf32> loc(unknown)):
      %24 = graph.matmul %h_1, %encoder.0.w2_1 : tensor<1x17x192xf32>, tensor<192x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":34:16)
      %25 = graph.add %x_5, %24 : tensor<1x17x48xf32>, tensor<1x17x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":34:12)
      %x_6 = graph.add %25, %encoder.0.b2_1 : tensor<1x17x48xf32>, tensor<48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":34:21)
      graph.yield %x_6 : tensor<1x17x48xf32> loc("samples/vit.model":34:21)
    } loc(fused["samples/vit.model":34:16, "samples/vit.model":34:12, "samples/vit.model":34:21])
    %24 = graph.relayout %encoder.1.ln1_g : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":27:19)
    %25 = graph.relayout %encoder.1.ln1_b : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":27:19)
    %26 = graph.kernel "row_3"(%x_4, %24, %25) {kind = "row"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_5: tensor<1x17x48xf32> loc(unknown), %encoder.1.ln1_g_1: tensor<48xf32> loc(unknown), %encoder.1.ln1_b_1: tensor<48xf32> loc(unknown)):
      %27 = graph.layernorm %x_5 scale %encoder.1.ln1_g_1 : tensor<48xf32> bias %encoder.1.ln1_b_1 : tensor<48xf32> {axis = 2 : i64, epsilon = 1.000000e-06 : f64} : tensor<1x17x48xf32> loc("samples/vit.model":27:19)
      graph.yield %27 : tensor<1x17x48xf32> loc("samples/vit.model":27:19)
    } loc("samples/vit.model":27:19)
    %27 = graph.relayout %encoder.1.w_qkv : tensor<48x144xf32, #graph.layout<[0, 1]>> -> tensor<48x144xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":27:56, "samples/vit.model":27:64])
    %28 = graph.relayout %encoder.1.b_qkv : tensor<144xf32, #graph.layout<[0]>> -> tensor<144xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":27:56, "samples/vit.model":27:64])
    %29 = graph.kernel "gemm_6"(%26, %27, %28) {kind = "gemm"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48x144xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<144xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x144xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%30: tensor<1x17x48xf32> loc(unknown), %encoder.1.w_qkv_1: tensor<48x144xf32> loc(unknown), %encoder.1.b_qkv_1: tensor<144xf32> loc(unknown)):
      %31 = graph.matmul %30, %encoder.1.w_qkv_1 : tensor<1x17x48xf32>, tensor<48x144xf32> -> tensor<1x17x144xf32> loc("samples/vit.model":27:56)
      %32 = graph.add %31, %encoder.1.b_qkv_1 : tensor<1x17x144xf32>, tensor<144xf32> -> tensor<1x17x144xf32> loc("samples/vit.model":27:64)
      graph.yield %32 : tensor<1x17x144xf32> loc("samples/vit.model":27:64)
    } loc(fused["samples/vit.model":27:56, "samples/vit.model":27:64])
    %30 = graph.kernel "gemm_7"(%29) {kind = "gemm"} : (tensor<1x17x144xf32, #graph.layout<[0, 1, 2], tile = [320]>>) -> tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> {
    ^bb0(%31: tensor<1x17x144xf32> loc(unknown)):
      %32 = graph.constant {value = 0.28867513459481292 : f64} : tensor<f32> loc("samples/vit.model":31:25)
      %q = graph.slice %31 {axis = 2 : i64, start = 0 : i64, end = 48 : i64} : tensor<1x17x144xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":27:13)
      %k = graph.slice %31 {axis = 2 : i64, start = 48 : i64, end = 96 : i64} : tensor<1x17x144xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":27:13)
      %33 = graph.reshape %q : tensor<1x17x48xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":28:17)
      %q_1 = graph.transpose %33 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x17x4x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":28:7)
      %34 = graph.reshape %k : tensor<1x17x48xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":29:17)
      %k_1 = graph.transpose %34 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x17x4x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":29:7)
      %35 = graph.transpose %k_1 {perm = array<i64: 0, 1, 3, 2>} : tensor<1x4x17x12xf32> -> tensor<1x4x12x17xf32> loc("samples/vit.model":31:25)
      %36 = graph.matmul %q_1, %35 : tensor<1x4x17x12xf32>, tensor<1x4x12x17xf32> -> tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
      %37 = graph.mul %36, %32 : tensor<1x4x17x17xf32>, tensor<f32> -> tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
      graph.yield %37 : tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
    } loc(fused["samples/vit.model":27:13, "samples/vit.model":28:17, "samples/vit.model":28:7, "samples/vit.model":29:17, "samples/vit.model":29:7, "samples/vit.model":31:25])
    %31 = graph.kernel "row_4"(%30) {kind = "row"} : (tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>) -> tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> {
    ^bb0(%32: tensor<1x4x17x17xf32> loc(unknown)):
      %33 = graph.softmax %32 {axis = 3 : i64} : tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
      graph.yield %33 : tensor<1x4x17x17xf32> loc("samples/vit.model":31:25)
    } loc("samples/vit.model":31:25)
    %32 = graph.kernel "gemm_8"(%29, %31) {kind = "gemm"} : (tensor<1x17x144xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<1x4x17x17xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>) -> tensor<1x4x17x12xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>> {
    ^bb0(%33: tensor<1x17x144xf32> loc(unknown), %34: tensor<1x4x17x17xf32> loc(unknown)):
      %v = graph.slice %33 {axis = 2 : i64, start = 96 : i64, end = 144 : i64} : tensor<1x17x144xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":27:13)
      %35 = graph.reshape %v : tensor<1x17x48xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":30:17)
      %v_1 = graph.transpose %35 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x17x4x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":30:7)
      %36 = graph.matmul %34, %v_1 : tensor<1x4x17x17xf32>, tensor<1x4x17x12xf32> -> tensor<1x4x17x12xf32> loc("samples/vit.model":31:25)
      graph.yield %36 : tensor<1x4x17x12xf32> loc("samples/vit.model":31:25)
    } loc(fused["samples/vit.model":27:13, "samples/vit.model":30:17, "samples/vit.model":30:7, "samples/vit.model":31:25])
    %33 = graph.relayout %encoder.1.w_o : tensor<48x48xf32, #graph.layout<[0, 1]>> -> tensor<48x48xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":31:15, "samples/vit.model":31:7, "samples/vit.model":32:13, "samples/vit.model":32:9, "samples/vit.model":32:19])
    %34 = graph.relayout %encoder.1.b_o : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":31:15, "samples/vit.model":31:7, "samples/vit.model":32:13, "samples/vit.model":32:9, "samples/vit.model":32:19])
    %x_5 = graph.kernel "gemm_9"(%32, %33, %x_4, %34) {kind = "gemm"} : (tensor<1x4x17x12xf32, #graph.layout<[0, 1, 2, 3], tile = [320]>>, tensor<48x48xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%35: tensor<1x4x17x12xf32> loc(unknown), %encoder.1.w_o_1: tensor<48x48xf32> loc(unknown), %x_6: tensor<1x17x48xf32> loc(unknown), %encoder.1.b_o_1: tensor<48xf32> loc(unknown)):
      %36 = graph.transpose %35 {perm = array<i64: 0, 2, 1, 3>} : tensor<1x4x17x12xf32> -> tensor<1x17x4x12xf32> loc("samples/vit.model":31:15)
      %o = graph.reshape %36 : tensor<1x17x4x12xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":31:7)
      %37 = graph.matmul %o, %encoder.1.w_o_1 : tensor<1x17x48xf32>, tensor<48x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":32:13)
      %38 = graph.add %x_6, %37 : tensor<1x17x48xf32>, tensor<1x17x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":32:9)
      %x_7 = graph.add %38, %encoder.1.b_o_1 : tensor<1x17x48xf32>, tensor<48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":32:19)
      graph.yield %x_7 : tensor<1x17x48xf32> loc("samples/vit.model":32:19)
    } loc(fused["samples/vit.model":31:15, "samples/vit.model":31:7, "samples/vit.model":32:13, "samples/vit.model":32:9, "samples/vit.model":32:19])
    %35 = graph.relayout %encoder.1.ln2_g : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":33:12)
    %36 = graph.relayout %encoder.1.ln2_b : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":33:12)
    %37 = graph.kernel "row_5"(%x_5, %35, %36) {kind = "row"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_6: tensor<1x17x48xf32> loc(unknown), %encoder.1.ln2_g_1: tensor<48xf32> loc(unknown), %encoder.1.ln2_b_1: tensor<48xf32> loc(unknown)):
      %38 = graph.layernorm %x_6 scale %encoder.1.ln2_g_1 : tensor<48xf32> bias %encoder.1.ln2_b_1 : tensor<48xf32> {axis = 2 : i64, epsilon = 1.000000e-06 : f64} : tensor<1x17x48xf32> loc("samples/vit.model":33:12)
      graph.yield %38 : tensor<1x17x48xf32> loc("samples/vit.model":33:12)
    } loc("samples/vit.model":33:12)
    %38 = graph.relayout %encoder.1.w1 : tensor<48x192xf32, #graph.layout<[0, 1]>> -> tensor<48x192xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":33:49, "samples/vit.model":33:54, "samples/vit.model":33:7])
    %39 = graph.relayout %encoder.1.b1 : tensor<192xf32, #graph.layout<[0]>> -> tensor<192xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":33:49, "samples/vit.model":33:54, "samples/vit.model":33:7])
    %h_1 = graph.kernel "gemm_10"(%37, %38, %39) {kind = "gemm"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48x192xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<192xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x192xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%40: tensor<1x17x48xf32> loc(unknown), %encoder.1.w1_1: tensor<48x192xf32> loc(unknown), %encoder.1.b1_1: tensor<192xf32> loc(unknown)):
      %41 = graph.matmul %40, %encoder.1.w1_1 : tensor<1x17x48xf32>, tensor<48x192xf32> -> tensor<1x17x192xf32> loc("samples/vit.model":33:49)
      %42 = graph.add %41, %encoder.1.b1_1 : tensor<1x17x192xf32>, tensor<192xf32> -> tensor<1x17x192xf32> loc("samples/vit.model":33:54)
      %h_2 = graph.gelu %42 : tensor<1x17x192xf32> loc("samples/vit.model":33:7)
      graph.yield %h_2 : tensor<1x17x192xf32> loc("samples/vit.model":33:7)
    } loc(fused["samples/vit.model":33:49, "samples/vit.model":33:54, "samples/vit.model":33:7])
    %40 = graph.relayout %encoder.1.w2 : tensor<192x48xf32, #graph.layout<[0, 1]>> -> tensor<192x48xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":34:16, "samples/vit.model":34:12, "samples/vit.model":34:21])
    %41 = graph.relayout %encoder.1.b2 : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":34:16, "samples/vit.model":34:12, "samples/vit.model":34:21])
    %x_6 = graph.kernel "gemm_11"(%h_1, %40, %x_5, %41) {kind = "gemm"} : (tensor<1x17x192xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<192x48xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%h_2: tensor<1x17x192xf32> loc(unknown), %encoder.1.w2_1: tensor<192x48xf32> loc(unknown), %x_7: tensor<1x17x48xf32> loc(unknown), %encoder.1.b2_1: tensor<48xf32> loc(unknown)):
      %42 = graph.matmul %h_2, %encoder.1.w2_1 : tensor<1x17x192xf32>, tensor<192x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":34:16)
      %43 = graph.add %x_7, %42 : tensor<1x17x48xf32>, tensor<1x17x48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":34:12)
      %x_8 = graph.add %43, %encoder.1.b2_1 : tensor<1x17x48xf32>, tensor<48xf32> -> tensor<1x17x48xf32> loc("samples/vit.model":34:21)
      graph.yield %x_8 : tensor<1x17x48xf32> loc("samples/vit.model":34:21)
    } loc(fused["samples/vit.model":34:16, "samples/vit.model":34:12, "samples/vit.model":34:21])
    %42 = graph.relayout %ln_g : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":55:7)
    %43 = graph.relayout %ln_b : tensor<48xf32, #graph.layout<[0]>> -> tensor<48xf32, #graph.layout<[0], tile = [320]>> loc("samples/vit.model":55:7)
    %x_7 = graph.kernel "row_6"(%x_6, %42, %43) {kind = "row"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>, tensor<48xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>> {
    ^bb0(%x_8: tensor<1x17x48xf32> loc(unknown), %ln_g_1: tensor<48xf32> loc(unknown), %ln_b_1: tensor<48xf32> loc(unknown)):
      %x_9 = graph.layernorm %x_8 scale %ln_g_1 : tensor<48xf32> bias %ln_b_1 : tensor<48xf32> {axis = 2 : i64, epsilon = 1.000000e-06 : f64} : tensor<1x17x48xf32> loc("samples/vit.model":55:7)
      graph.yield %x_9 : tensor<1x17x48xf32> loc("samples/vit.model":55:7)
    } loc("samples/vit.model":55:7)
    %44 = graph.relayout %head_w : tensor<48x10xf32, #graph.layout<[0, 1]>> -> tensor<48x10xf32, #graph.layout<[0, 1], tile = [320]>> loc(fused["samples/vit.model":56:18, "samples/vit.model":56:10, "samples/vit.model":56:60, "samples/vit.model":56:69])
    %45 = graph.relayout %head_b : tensor<10xf32, #graph.layout<[0]>> -> tensor<10xf32, #graph.layout<[0], tile = [320]>> loc(fused["samples/vit.model":56:18, "samples/vit.model":56:10, "samples/vit.model":56:60, "samples/vit.model":56:69])
    %46 = graph.kernel "gemm_12"(%x_7, %44, %45) {kind = "gemm"} : (tensor<1x17x48xf32, #graph.layout<[0, 1, 2], tile = [320]>>, tensor<48x10xf32, #graph.layout<[0, 1], tile = [320]>>, tensor<10xf32, #graph.layout<[0], tile = [320]>>) -> tensor<1x10xf32, #graph.layout<[0, 1], tile = [320]>> {
    ^bb0(%x_8: tensor<1x17x48xf32> loc(unknown), %head_w_1: tensor<48x10xf32> loc(unknown), %head_b_1: tensor<10xf32> loc(unknown)):
      %47 = graph.slice %x_8 {axis = 1 : i64, start = 0 : i64, end = 1 : i64} : tensor<1x17x48xf32> -> tensor<1x1x48xf32> loc("samples/vit.model":56:18)
      %48 = graph.reshape %47 : tensor<1x1x48xf32> -> tensor<1x48xf32> loc("samples/vit.model":56:10)
      %49 = graph.matmul %48, %head_w_1 : tensor<1x48xf32>, tensor<48x10xf32> -> tensor<1x10xf32> loc("samples/vit.model":56:60)
      %50 = graph.add %49, %head_b_1 : tensor<1x10xf32>, tensor<10xf32> -> tensor<1x10xf32> loc("samples/vit.model":56:69)
      graph.yield %50 : tensor<1x10xf32> loc("samples/vit.model":56:69)
    } loc(fused["samples/vit.model":56:18, "samples/vit.model":56:10, "samples/vit.model":56:60, "samples/vit.model":56:69])
    %47 = graph.relayout %46 : tensor<1x10xf32, #graph.layout<[0, 1], tile = [320]>> -> tensor<1x10xf32, #graph.layout<[0, 1]>> loc("samples/vit.model":56:3)
    func.return %47 : tensor<1x10xf32, #graph.layout<[0, 1]>> loc("samples/vit.model":56:3)
  } loc("samples/vit.model":37:7)
} loc(unknown)
