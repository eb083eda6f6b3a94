"""
Shared by the stage tests: reduced sizes of every sample, seeded values for a
module's inputs and params, and the float tolerance of stage-to-stage checks.
"""

import numpy as np
from xdsl.dialects import func

from strata.compiler.execution import weights

REDUCED = {
    "mlp": {"B": 4},
    "resnet18": {"HW": 32, "W0": 8, "NC": 10},
    "gpt2": {"S": 16, "D": 48, "H": 4, "L": 2},
    "llama": {"S": 16, "D": 64, "H": 4, "KVH": 2, "F": 96, "V": 128},
    "vit": {"HW": 32, "P": 8, "D": 48, "H": 4, "L": 2, "NC": 10},
}

TINY = {
    **REDUCED,
    "llama": {"S": 8, "D": 16, "H": 2, "KVH": 1, "F": 24, "V": 32},
    "vit": {"HW": 16, "P": 8, "D": 16, "H": 2, "L": 1, "NC": 10},
}
"""Sizes for tiny tiles (2..8): executing hundreds of tiles per kernel in the
loop interpreter costs ~0.2 ms an op, so the transformers get smaller still
(GPT-2's 50257-word vocabulary is fixed: it stays out of tiny-tile tests)."""


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
