"""
Shared by the stage tests: reduced sizes of every sample, seeded values for a
module's inputs and params, and the float tolerance of stage-to-stage checks.
"""

import numpy as np
from xdsl.dialects import func

from compiler import weights

REDUCED = {
    "mlp": {"B": 4},
    "resnet18": {"HW": 32, "W0": 8, "NC": 10},
    "gpt2": {"S": 16, "D": 48, "H": 4, "L": 2},
    "llama": {"S": 16, "D": 64, "H": 4, "KVH": 2, "F": 96, "V": 128},
    "vit": {"HW": 32, "P": 8, "D": 48, "H": 4, "L": 2, "NC": 10},
}


def sample_values(module):
    fn = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    specs = weights.model_signature(fn)
    drawn = weights.random_values(specs, np.random.default_rng(0), weights.integer_input_ranges(fn))
    return (
        {s.name: drawn[s.name] for s in specs if s.kind == "input"},
        {s.name: drawn[s.name] for s in specs if s.kind == "param"},
    )


def assert_close(want, got):
    for a, b in zip(want, got, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-4 * max(np.abs(a).max(), 1e-30)
