"""
The `graph` dialect: value-semantic tensor ops, one per model-language operation.

The model becomes a `func.func` whose arguments are the inputs, then the
params; each argument carries `graph.input = "name"` or `graph.param =
"path"` so a printed module is self-describing.
"""

from xdsl.ir import Dialect

from strata.dialects.graph.kernel import KernelOp, YieldOp
from strata.dialects.graph.layout import LayoutAttr, RelayoutOp

from strata.dialects.graph.ops import (
    AbsOp,
    AddOp,
    AllGatherOp,
    AllReduceOp,
    AvgPool2DOp,
    CastOp,
    CausalMaskOp,
    ConcatOp,
    ConstantOp,
    Conv2DOp,
    DequantizeOp,
    DivOp,
    ErfOp,
    ExpOp,
    GatherOp,
    GeluOp,
    GlobalAvgPoolOp,
    LayerNormOp,
    LogOp,
    LogSoftmaxOp,
    MatmulOp,
    MaximumOp,
    MaxPool2DOp,
    MeanOp,
    MinimumOp,
    MulOp,
    NegOp,
    PowOp,
    QuantizeOp,
    ReduceMaxOp,
    ReduceScatterOp,
    ReduceMinOp,
    ReluOp,
    ReshapeOp,
    RmsNormOp,
    RsqrtOp,
    SigmoidOp,
    SiluOp,
    SliceOp,
    SoftmaxOp,
    SplitOp,
    SqrtOp,
    SubOp,
    SumOp,
    TanhOp,
    TransposeOp,
)

INPUT_ATTR = "graph.input"
"""Argument attribute naming a model input."""
PARAM_ATTR = "graph.param"
"""Argument attribute giving a weight's path name (`attn.3.w_qkv`)."""

Graph = Dialect(
    "graph",
    [
        # Constants
        ConstantOp,
        # Elementwise
        AddOp,
        SubOp,
        MulOp,
        DivOp,
        MaximumOp,
        MinimumOp,
        PowOp,
        ReluOp,
        GeluOp,
        SiluOp,
        SigmoidOp,
        TanhOp,
        ExpOp,
        LogOp,
        SqrtOp,
        RsqrtOp,
        AbsOp,
        ErfOp,
        NegOp,
        CastOp,
        # Quantization
        QuantizeOp,
        DequantizeOp,
        # Contractions
        MatmulOp,
        Conv2DOp,
        # Reductions and row-wise ops
        SumOp,
        MeanOp,
        ReduceMaxOp,
        ReduceMinOp,
        SoftmaxOp,
        LogSoftmaxOp,
        LayerNormOp,
        RmsNormOp,
        CausalMaskOp,
        # Data movement
        TransposeOp,
        ReshapeOp,
        ConcatOp,
        SliceOp,
        SplitOp,
        GatherOp,
        # Collectives
        AllReduceOp,
        AllGatherOp,
        ReduceScatterOp,
        # Pooling
        MaxPool2DOp,
        AvgPool2DOp,
        GlobalAvgPoolOp,
        # Layouts
        RelayoutOp,
        # Fused kernels
        KernelOp,
        YieldOp,
    ],
    [LayoutAttr],
)
