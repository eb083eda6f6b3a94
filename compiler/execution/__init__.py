"""
Executing IR: `reference` (graph IR on NumPy, the semantic oracle),
`loop_interpreter` (loop and hardware IR), `native` (the upstream-MLIR export
compiled by LLVM and called through ctypes) and `weights` (model values:
drawn, loaded from and saved to `.npz`).
"""
