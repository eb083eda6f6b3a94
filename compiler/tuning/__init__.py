"""
The autotuner's driver side: `spaces` (each kernel's legal points, asked of
the passes that own each choice, and their evaluation) and `autotune` (the
module-level variants, the per-kernel search, the LPU chip step, reports).
The search itself is `strata.backends.tuner`.
"""
