"""
`assign-dataflow{dataflow=}`: choose each matrix kernel's systolic dataflow.

Preconditions: loop-stage IR (`loop.kernel`s with constant bounds).
Postconditions: on a systolic device (tpu), every gemm, conv and attention
kernel carries a `dataflow` attribute that `lower-to-hardware` reads; off
the systolic target the IR is unchanged.

A kernel keeps a dataflow it already carries (the tuner's, or a user's). The
option pins one dataflow for every other kernel (`--schedule dataflow=os`:
a what-if, any of `ws`, `os`, `is`). Without it each kernel gets, of the
dataflows the device's arrays run (`runnable_dataflows` of its `dataflow`:
a weight-stationary MXU holds either operand, so `ws` or `is`), the one whose
GEMMs (`kernel_gemms`) take the fewest array cycles on the device's
`num_arrays` arrays (`schedule_gemms`, the arithmetic the cost model uses),
the device's own on a tie. The HBM traffic does not depend on the choice,
so fewer cycles is never slower. It matters where one GEMM dimension is
tiny: a decode step's `q @ k^T` has one query row (M = 1) against 2048
keys; holding the keys stationary takes 16 folds of 128 keys, each shifted
in for one row, while holding the query stationary streams the keys
through one fold.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass

from strata.dialects import loop
from strata.dialects.device import DeviceSpec, resolve_device
from strata.dialects.hardware.systolic_math import runnable_dataflows, schedule_gemms
from strata.dialects.vocabulary import DATAFLOW_ATTR, DATAFLOWS, IllegalSchedule
from strata.passes._figures import kernel_gemms

MATRIX_KINDS = ("gemm", "conv", "attention")

# --------------------------------------------------------------------------- helpers


def dataflow_choices(kind: str, device: DeviceSpec) -> tuple[str, ...]:
    """The dataflows a kernel of `kind` may take on `device`'s arrays, its own first (none off the systolic target)."""
    if device.target != "tpu" or kind not in MATRIX_KINDS:
        return ()
    return runnable_dataflows(device["dataflow"])


def array_cycles(gemms: list[tuple[int, int, int, int]], device: DeviceSpec, dataflow: str) -> int:
    """Stall-free cycles of `gemms` (`(count, M, N, K)`) on the device's arrays in `dataflow`."""
    return sum(s.cycles for s in schedule_gemms(gemms, device, dataflow))


def fastest_dataflow(kernel: loop.KernelOp, device: DeviceSpec) -> str:
    """The dataflow of `dataflow_choices` with the fewest array cycles for the kernel, the first on a tie."""
    gemms = kernel_gemms(kernel)
    return min(dataflow_choices(kernel.kind.data, device), key=lambda flow: array_cycles(gemms, device, flow))


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class AssignDataflowPass(ModulePass):
    """Write a `dataflow` on every matrix kernel of a systolic device (see the module docstring)."""

    name = "assign-dataflow"

    target: str = ""
    """`gpu`, `tpu`, `lpu` or `cpu`: must match the module's device (empty: the recorded device)."""
    dataflow: str = ""
    """`ws`, `os` or `is` for every kernel without its own (empty: each kernel's fastest the arrays run)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        device = resolve_device(op, self.target)
        if self.dataflow and self.dataflow not in DATAFLOWS:
            raise IllegalSchedule(f"assign-dataflow: dataflow must be one of {', '.join(DATAFLOWS)}, got '{self.dataflow}'")
        if device.target != "tpu":
            return
        for kernel in [k for k in op.walk() if isinstance(k, loop.KernelOp)]:
            if DATAFLOW_ATTR in kernel.attributes or kernel.kind.data not in MATRIX_KINDS:
                continue
            kernel.attributes[DATAFLOW_ATTR] = StringAttr(self.dataflow or fastest_dataflow(kernel, device))
