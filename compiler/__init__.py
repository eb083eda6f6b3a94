"""
The strata driver and everything around it: `driver` (stages, the default
pipeline, the pass runner), `cli`, `api` (the Python API), `frontend/` (the
model language), `execution/` (the NumPy reference, the loop interpreter, the
native MLIR runner, weights), `tuning/` (the autotuner's driver side),
`reports/` (cost reports and model statistics) and `testing/` (hypothesis
strategies, pass properties and `strata fuzz`).
"""
