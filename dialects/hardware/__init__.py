"""
One hardware dialect per target: `simt` (GPU), `systolic` (TPU-style
systolic arrays), `tsp` (Groq-style LPU) and `cpu` (multi-core CPU). Names chosen not to clash with
the dialects xDSL registers (`gpu`, `hw`, `stream`, ...).
"""

from strata.dialects.hardware._kernel import HardwareKernelOp, MatrixOp, TransferOp
from strata.dialects.hardware.cpu import Cpu
from strata.dialects.hardware.simt import Simt
from strata.dialects.hardware.systolic import Systolic
from strata.dialects.hardware.tsp import Tsp

HARDWARE_DIALECTS = (Simt, Systolic, Tsp, Cpu)
END_OPS = tuple(op for d in HARDWARE_DIALECTS for op in d.operations if op.name.endswith(".end"))

TRANSFER_OPS = {d.name: next(op for op in d.operations if op.name.endswith(".transfer")) for d in HARDWARE_DIALECTS}
"""Per dialect, its device-to-device move (`simt.transfer`, ...)."""

COLLECTIVE_OPS = {
    d.name: {
        op.name.split(".")[1]: op
        for op in d.operations if op.name.endswith((".all_reduce", ".all_gather", ".reduce_scatter"))
    }
    for d in HARDWARE_DIALECTS
}
"""Per dialect, its collectives by kind (`{"all_reduce": simt.AllReduceOp, ...}`)."""

__all__ = ["COLLECTIVE_OPS", "Cpu", "HARDWARE_DIALECTS", "END_OPS", "TRANSFER_OPS", "HardwareKernelOp", "MatrixOp", "TransferOp", "Simt",
           "Systolic", "Tsp"]
