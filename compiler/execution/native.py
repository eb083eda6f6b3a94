"""
Real execution through the MLIR toolchain (`strata run --backend mlir`).

A module is lowered to the loop stage for its target, its GEMM kernels with
this CPU's tiles (`HostGemmTilesPass`), exported to upstream MLIR
(`export-mlir`: vector micro-kernels, `scf.parallel` tile loops), written to
a temporary directory and lowered with the LLVM 22 tools:

    mlir-opt-22  MLIR_PIPELINE           upstream dialects -> LLVM dialect
                 (+ scf.parallel -> OpenMP for --threads N > 1)
    mlir-translate-22 --mlir-to-llvmir   -> LLVM IR
    opt-22 -O2, llc-22 -O2 (this CPU,    -> optimised object file (PIC)
      libmvec for vector math calls)
    cc -shared (+ libomp)                -> model.so

The shared library is loaded with ctypes and its `_mlir_ciface_<model>`
entry point (from `llvm.emit_c_interface`) is called with one memref
descriptor per argument, built over NumPy arrays: the inputs and params in
argument order, then one output buffer per result, which it fills.

A missing tool is a `StrataError` that says which package installs it; a
failing tool shows its command line and its stderr.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import Float8E4M3FNType, Float8E5M2Type, ModuleOp
from xdsl.passes import ModulePass

from strata.compiler import host, ir  # host: the process's cores, recorded before OpenMP binds a thread
from strata.compiler.execution import reference
from strata.compiler.diagnostics import StrataError
from strata.compiler.driver import Stage, compile_module, detect_stage, passes_between
from strata.passes.export_mlir import C_INTERFACE, DTYPE_ATTR, LOAD_ATTR, OUTPUT_ATTR, PREPARED_ATTR

MLIR_PIPELINE = (
    # Tiles are tensors: bufferize them (loops may yield new buffers), then
    # free every buffer after its last use.
    "--one-shot-bufferize=allow-return-allocs-from-loops",
    "--buffer-deallocation-pipeline",
    "--convert-linalg-to-loops",
    "--convert-vector-to-scf=full-unroll",
    "--lower-affine",
    "--canonicalize",
    "--cse",
    "--convert-scf-to-cf",
    "--expand-strided-metadata",
    "--lower-affine",
    # Any 2-D `vector.transpose` as 16 x 16 shuffles, not element by element.
    "--convert-vector-to-llvm=vector-transpose-lowering=shuffle16x16",
    "--convert-ub-to-llvm",
    "--finalize-memref-to-llvm",
    "--convert-math-to-funcs=convert-ctlz=false",
    "--convert-math-to-libm",
    "--convert-math-to-llvm",
    "--convert-arith-to-llvm",
    "--convert-index-to-llvm",
    "--convert-func-to-llvm",
    "--convert-cf-to-llvm",
    "--reconcile-unrealized-casts",
)
"""mlir-opt-22 flags lowering exported IR to the LLVM dialect."""

RUNTIME_LIBRARY = Path("/usr/lib/llvm-22/lib/libmlir_c_runner_utils.so.22.1")
"""MLIR's C runner utilities (`memrefCopy` for non-contiguous copies)."""

OPENMP_LIBRARY = Path("/usr/lib/llvm-22/lib/libomp.so.5")
"""LLVM's OpenMP runtime (apt-get install libomp-22-dev): it runs the `scf.parallel` loops on threads."""


def parallel_passes(threads: int) -> tuple[str, ...]:
    """
    mlir-opt-22 flags that run each `scf.parallel` loop as an OpenMP
    parallel loop on `threads` threads; none for one thread, where
    `scf.parallel` lowers to a sequential loop.
    """
    if threads <= 1:
        return ()
    return (f"--convert-scf-to-openmp=num-threads={threads}",)

LLVM_BIN = Path("/usr/lib/llvm-22/bin")
"""Where Debian's LLVM 22 packages put the unsuffixed tools."""

_PACKAGES = {
    "mlir-opt-22": "mlir-22-tools",
    "mlir-translate-22": "mlir-22-tools",
    "opt-22": "llvm-22",
    "llc-22": "llvm-22",
}


class MlirToolError(StrataError):
    """An MLIR/LLVM tool is missing or failed."""


def find_tool(name: str) -> str:
    """The path of an LLVM 22 tool, or a `MlirToolError` saying how to install it."""
    fallback = LLVM_BIN / name.removesuffix("-22")
    found = shutil.which(name) or (str(fallback) if fallback.exists() else None)
    if found is None:
        package = _PACKAGES.get(name, "mlir-22-tools")
        raise MlirToolError(
            f"error: '{name}' was not found; the mlir backend needs the LLVM/MLIR 22 tools:"
            f" apt-get install mlir-22-tools llvm-22 (this one is in {package})"
        )
    return found


def _c_compiler() -> str:
    for name in ("cc", "gcc", "clang-22", "clang"):
        found = shutil.which(name)
        if found:
            return found
    raise MlirToolError("error: no C compiler (cc, gcc or clang) to link the model's shared library: apt-get install gcc")


def tools_available() -> bool:
    try:
        for name in ("mlir-opt-22", "mlir-translate-22", "opt-22", "llc-22"):
            find_tool(name)
        _c_compiler()
    except MlirToolError:
        return False
    return True


def _run(command: Sequence[str], what: str) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True)
    if result.returncode != 0:
        stderr = result.stderr.strip()
        if len(stderr) > 6000:
            stderr = stderr[:6000] + "\n... (truncated)"
        raise MlirToolError(f"error: {what} failed (exit {result.returncode}):\n$ {' '.join(command)}\n{stderr}")


def verify_mlir(path: Path) -> None:
    """Check an exported file with the real `mlir-opt-22` (parse and verify)."""
    _run([find_tool("mlir-opt-22"), str(path), "-o", os.devnull], "mlir-opt-22 (verifying the export)")


def _host_triple() -> str:
    machine = platform.machine()
    return f"{'aarch64' if machine in ('arm64', 'aarch64') else machine}-unknown-linux-gnu"


OPT_LEVEL = 2
"""LLVM optimisation level: -O2 vectorises like -O3 and compiles several times faster."""


def build_shared_library(mlir_file: Path, workdir: Path, opt_level: int = OPT_LEVEL, threads: int = 1,
                         runtime_c: str | None = None) -> Path:
    """
    Lower an exported `.mlir` file to a shared library in `workdir` whose
    parallel loops use `threads`; `runtime_c` is C source compiled into it
    (the instrumented export's timers, `compiler/measure.py`).
    """
    if threads < 1:
        raise StrataError(f"error: --threads must be at least 1, not {threads}")
    llvm_dialect = workdir / "model.llvm.mlir"
    llvm_ir = workdir / "model.ll"
    optimised = workdir / "model.opt.bc"
    obj = workdir / "model.o"
    library = workdir / "model.so"
    split = MLIR_PIPELINE.index("--convert-linalg-to-loops") + 1
    pipeline = [*MLIR_PIPELINE[:split], *parallel_passes(threads), *MLIR_PIPELINE[split:]]
    if threads > 1:
        pipeline.insert(pipeline.index("--reconcile-unrealized-casts"), "--convert-openmp-to-llvm")
    _run([find_tool("mlir-opt-22"), str(mlir_file), *pipeline, "-o", str(llvm_dialect)], "mlir-opt-22")
    _run([find_tool("mlir-translate-22"), "--mlir-to-llvmir", str(llvm_dialect), "-o", str(llvm_ir)],
         "mlir-translate-22")
    # The exported module names no target: compile for this machine, so that
    # LLVM's cost models see its vector units. Intel's AVX-512 cores' tuning
    # (`prefer-256-bit`) has the loop vectoriser use half their registers' width;
    # turned off, as on Zen 4: on the Granite Rapids guest (which LLVM reads as
    # Rocket Lake) an int8 3x3 conv of 96 channels at 8 x 8 ran 416 -> 293 us,
    # ResNet-18 int8 (HW=64) 1.51 -> 1.45 ms, ViT 1.72 -> 1.66 ms.
    host = [f"-mtriple={_host_triple()}", "-mcpu=native", "-mattr=-prefer-256-bit"]
    # libmvec (glibc's vector math) lets the loop vectoriser call vector math functions in elementwise
    # loops (`exp` the export writes itself, `Emitter.exp`).
    veclib = ["-vector-library=LIBMVEC"] if platform.machine() == "x86_64" else []
    _run([find_tool("opt-22"), f"-O{opt_level}", *host, *veclib, str(llvm_ir), "-o", str(optimised)], "opt-22")
    _run([find_tool("llc-22"), f"-O{opt_level}", *host, "-relocation-model=pic", "-filetype=obj", str(optimised),
          "-o", str(obj)], "llc-22")
    link = [_c_compiler(), "-shared", "-o", str(library), str(obj)]
    if runtime_c is not None:
        source = workdir / "runtime.c"
        source.write_text(runtime_c)
        link += ["-O2", "-fPIC", str(source)]
    if RUNTIME_LIBRARY.exists():
        link += [str(RUNTIME_LIBRARY), f"-Wl,-rpath,{RUNTIME_LIBRARY.parent}"]
    if threads > 1:
        if not OPENMP_LIBRARY.exists():
            raise MlirToolError(f"error: --threads {threads} needs LLVM's OpenMP runtime {OPENMP_LIBRARY}:"
                                " apt-get install libomp-22-dev")
        link += [str(OPENMP_LIBRARY), f"-Wl,-rpath,{OPENMP_LIBRARY.parent}"]
    _run([*link, *(["-lmvec"] if veclib else []), "-lm"], "linking the model's shared library")
    return library


# --------------------------------------------------------------------------- memref descriptors

_DESCRIPTORS: dict[int, type[ctypes.Structure]] = {}


def _descriptor_type(rank: int) -> type[ctypes.Structure]:
    """`{T *allocated, T *aligned, i64 offset, i64 sizes[rank], i64 strides[rank]}`."""
    if rank not in _DESCRIPTORS:
        fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64)]
        if rank:
            fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
        _DESCRIPTORS[rank] = type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})
    return _DESCRIPTORS[rank]


def memref_descriptor(array: np.ndarray) -> ctypes.Structure:
    """A descriptor viewing a C-contiguous NumPy array (which must outlive it)."""
    assert array.flags.c_contiguous
    desc = _descriptor_type(array.ndim)()
    desc.allocated = desc.aligned = array.ctypes.data
    desc.offset = 0
    if array.ndim:
        desc.sizes[:] = list(array.shape)
        desc.strides[:] = [s // array.itemsize for s in array.strides] if array.size else [0] * array.ndim
    return desc


# --------------------------------------------------------------------------- compiled models


@dataclass
class CompiledModel:
    """An exported model compiled to a shared library, callable on NumPy arrays."""

    library: ctypes.CDLL
    entry: object
    names: list[tuple[str, str]]
    arg_types: list
    out_types: list
    workdir: Path
    _tempdir: tempfile.TemporaryDirectory | None = None
    load_entry: object | None = None
    """The load function (`@<model>_load`, export-mlir), None when the model has no work at load."""
    prepared_types: list = field(default_factory=list)
    """The buffers the load function prepares and every call reads, after the outputs."""

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = [_bind(t, a, i) for i, (t, a) in enumerate(zip(self.arg_types, args, strict=True))]
        prepared = self.load(arrays)
        # The model writes every element of its outputs: no zeroing (nor, for big ones, fresh zero pages).
        outputs = [np.empty(tuple(t.get_shape()), _numpy_dtype(t)) for t in self.out_types]
        descriptors = [memref_descriptor(a) for a in (*arrays, *outputs, *prepared)]
        self.entry(*(ctypes.byref(d) for d in descriptors))
        return outputs

    def load(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the load function once on the bound arguments: the buffers it prepares (none without one)."""
        prepared = [np.empty(tuple(t.get_shape()), _numpy_dtype(t)) for t in self.prepared_types]
        if self.load_entry is not None:
            descriptors = [memref_descriptor(a) for a in (*arrays, *prepared)]
            self.load_entry(*(ctypes.byref(d) for d in descriptors))
        return prepared

    def prepare(self, inputs: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]):
        """
        `(call, outputs)`: `call()` runs the model on the given values, bound
        once (and its work at load done once, here), into `outputs` (for
        timing the compute alone).
        """
        pools = {"input": inputs, "param": weights}
        arrays = [_bind(t, pools[k][n], i) for i, (t, (k, n)) in enumerate(zip(self.arg_types, self.names))]
        prepared = self.load(arrays)
        outputs = [np.empty(tuple(t.get_shape()), _numpy_dtype(t)) for t in self.out_types]
        descriptors = [memref_descriptor(a) for a in (*arrays, *outputs, *prepared)]
        pointers = [ctypes.byref(d) for d in descriptors]
        at_load = [pointers[i] for i in range(len(arrays))] + pointers[len(arrays) + len(outputs):]

        def call() -> None:
            self.entry(*pointers)

        def load() -> None:
            if self.load_entry is not None:
                self.load_entry(*at_load)

        call.load = load  # the work at load again, into the same buffers (for timing it)
        call.keep = (arrays, outputs, prepared, descriptors)  # the descriptors point into these arrays
        return call, outputs

    def run(self, inputs: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        pools = {"input": inputs, "param": weights}
        missing = [n for k, n in self.names if n not in pools[k]]
        if missing:
            raise reference.ExecutionError(f"error: no value given for {', '.join(repr(n) for n in missing)}")
        return self([pools[k][n] for k, n in self.names])


@dataclass(frozen=True)
class _Held:
    """A memref argument type and the model dtype of its elements where the memref holds them in another (`u8` in `i8`)."""

    memref: object
    dtype: str | None

    def get_shape(self):
        return self.memref.get_shape()


def _numpy_dtype(type_) -> np.dtype:
    """The NumPy dtype of an argument's array: its model dtype's (`u8`: uint8, `i4`: int8 -8..7), one byte as stored."""
    if isinstance(type_, _Held) and type_.dtype is not None:
        return reference.NUMPY_DTYPES[type_.dtype]
    return reference.numpy_dtype(getattr(type_, "memref", type_).element_type)


def _bind(type_, value, index: int) -> np.ndarray:
    value = np.asarray(value)
    shape = tuple(type_.get_shape())
    if value.shape != shape:
        raise reference.ExecutionError(f"error: argument #{index} has shape {value.shape}, the model needs {shape}")
    if isinstance(type_, _Held) and type_.dtype == "i4":
        return np.ascontiguousarray(reference.to_i4(value))
    return np.ascontiguousarray(reference.convert(value, _numpy_dtype(type_)))


def _check_dtypes(module: ModuleOp) -> None:
    """
    LLVM has no f8 types: export-mlir holds f8 values as their bits in i8
    and computes them in f32 (`passes/_linalg.py`); an f8 value it left
    (none should be) is refused here, before mlir-opt fails on it.
    """
    for op in module.walk():
        for value in (*op.results, *(a for r in op.regions for b in r.blocks for a in b.args)):
            element = getattr(value.type, "element_type", value.type)
            if isinstance(element, (Float8E4M3FNType, Float8E5M2Type)):
                raise StrataError(
                    f"error: the mlir backend does not support f8 values ({element}) here: LLVM has no f8"
                    f" arithmetic; run this model with the interpreter (at {op.location})"
                )


HOST_GEMM_TILE = (128, 256, 128)
"""
The GEMM tile (rows, columns, reduction) for this CPU, where the target's
fits: per core the 128 x 128 tile of `a` (64 KiB), the packed 128 x 256
tile of `b` (128 KiB) and the 128 x 256 accumulator (128 KiB) stay in L2
(2 MiB per core here), a packed 128 x 32 strip of `b` (16 KiB) in L1 (48
KiB) while the micro-kernel's 12-row blocks of `a` stream past it, and
each tile's packing is amortised over 2 x 128 x 256 x 128 flops.
"""


@dataclass(frozen=True)
class HostGemmTilesPass(ModulePass):
    """Give every GEMM kernel `HOST_GEMM_TILE` (clamped, when legal and it fits the target) before `tile`."""

    name = "host-gemm-tiles"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from strata.dialects.device import resolve_device
        from strata.dialects.graph.kernel import KernelOp
        from strata.dialects.vocabulary import ORDER_ATTR, TILE_ATTR
        from xdsl.dialects.builtin import DenseArrayBase, i64

        from strata.passes.tile import apply_sizes, default_tiles, shape_of

        def _ints(values) -> DenseArrayBase:
            return DenseArrayBase.from_list(i64, list(values))

        device = resolve_device(op)
        if device.target == "cpu":
            return  # `tile` derives a CPU's GEMM tiles from its caches (`tile.cpu_gemm_tile`)
        for kernel in op.walk():
            if isinstance(kernel, KernelOp) and kernel.kind.data == "gemm" and TILE_ATTR not in kernel.attributes:
                base = default_tiles(kernel, device)
                tiles = apply_sizes(kernel, base, HOST_GEMM_TILE, device)
                if tiles != base:
                    kernel.attributes[TILE_ATTR] = _ints(tiles)
                    kernel.attributes[ORDER_ATTR] = _ints(range(len(shape_of(kernel.outputs[0]))))


def export(module: ModuleOp, target: str, host_tiles: bool = True, threads: int = 1) -> ModuleOp:
    """
    A copy of `module` lowered to the loop stage for `target` (on the cpu,
    tiled for `threads`) and exported to upstream MLIR; with `host_tiles`,
    GEMM kernels take this CPU's tiles (`HostGemmTilesPass`) instead of the
    target's.
    """
    module = module.clone()
    stage = detect_stage(module)
    if stage == Stage.MLIR:
        return module
    if stage == Stage.HARDWARE:
        raise StrataError("error: the mlir backend runs loop-stage IR (or earlier), not hardware-stage IR")
    passes = passes_between(target, stage, Stage.MLIR, threads)
    names = [p.name for p in passes]
    if host_tiles and "tile" in names:
        passes.insert(names.index("tile"), HostGemmTilesPass())
    compile_module(module, target, Stage.MLIR, pipeline=passes)
    return module


def compile_exported(exported: ModuleOp, workdir: Path | None = None, opt_level: int = OPT_LEVEL,
                     threads: int = 1, runtime_c: str | None = None) -> CompiledModel:
    """
    Compile exported upstream MLIR to a shared library (parallel loops on
    `threads`, `runtime_c` compiled in) and load it.
    """
    entries = [op for op in exported.ops if isinstance(op, func.FuncOp) and C_INTERFACE in op.attributes]
    fn = next((op for op in entries if LOAD_ATTR not in op.attributes), None)
    if fn is None:
        raise StrataError("error: the exported module has no function with llvm.emit_c_interface")
    load_fn = next((op for op in entries if LOAD_ATTR in op.attributes), None)
    _check_dtypes(exported)
    tempdir = None
    if workdir is None:
        tempdir = tempfile.TemporaryDirectory(prefix="strata-mlir-")
        workdir = Path(tempdir.name)
    workdir.mkdir(parents=True, exist_ok=True)
    mlir_file = workdir / "model.mlir"
    mlir_file.write_text(ir.print_module(exported, debuginfo=False))
    library_path = build_shared_library(mlir_file, workdir, opt_level, threads, runtime_c)
    _keep_freed_heap()
    if threads > 1:
        _spread_threads()
    library = ctypes.CDLL(str(library_path))
    entry, load_entry = (_entry(library, f) for f in (fn, load_fn))
    attrs = [d.data for d in fn.arg_attrs.data] if fn.arg_attrs else []
    types = [_Held(t, attrs[i][DTYPE_ATTR].data if i < len(attrs) and DTYPE_ATTR in attrs[i] else None)
             for i, t in enumerate(fn.function_type.inputs.data)]
    roles = [OUTPUT_ATTR if OUTPUT_ATTR in d else PREPARED_ATTR if PREPARED_ATTR in d else "" for d in attrs]
    roles += [""] * (len(types) - len(roles))
    arg_types = [t for t, r in zip(types, roles) if not r]
    out_types = [t for t, r in zip(types, roles) if r == OUTPUT_ATTR]
    prepared_types = [t for t, r in zip(types, roles) if r == PREPARED_ATTR]
    names = reference.argument_names(fn, len(arg_types))
    return CompiledModel(library, entry, names, arg_types, out_types, workdir, tempdir, load_entry, prepared_types)


def _entry(library: ctypes.CDLL, fn: func.FuncOp | None):
    """The C interface (`_mlir_ciface_<name>`) of an exported function, or None without one."""
    if fn is None:
        return None
    entry = getattr(library, f"_mlir_ciface_{fn.sym_name.data}")
    entry.restype = None
    return entry


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit: larger values are refused


OPENMP_PLACEMENT = {"OMP_PROC_BIND": "spread", "OMP_PLACES": "cores"}
"""Where the OpenMP runtime puts its threads, unless the caller's environment says otherwise."""


def _spread_threads() -> None:
    """
    Bind each OpenMP thread to a core of its own (`OPENMP_PLACEMENT`), as
    ML runtimes pin their intra-op pools (onnxruntime's thread affinity,
    oneDNN's). Unbound, Linux woke the worker of a short parallel region on
    the caller's core, and the two shared it: the MLP's first GEMM (two
    64 x 128 tiles, about 140 us) took 340 us on 2 threads, more than on
    one, where the 1024^3 GEMM (20 ms, time for the scheduler to move the
    worker) ran 1.95x faster; bound, 150 us (the Zen 4 guest, 2026-12-07).
    The runtime reads these when it starts, at the first parallel region.
    """
    for key, value in OPENMP_PLACEMENT.items():
        os.environ.setdefault(key, value)


def _keep_freed_heap() -> None:
    """
    Keep the buffers a call frees for the next call, as an ML runtime's arena
    does (onnxruntime's, oneDNN's). The exported code allocates its
    intermediates with malloc on every call; by default glibc gives freed
    blocks over 128 KiB (and a heap top over 128 KiB) back to the kernel, so
    every call faults the same pages in again (0.25-0.5 us per 4 KiB page
    here, 10-25% of a sample's time, and scattered over whichever kernel
    touches them first). Raising both thresholds keeps blocks up to 32 MiB
    in the heap. Without glibc (no `mallopt`) nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def compile_model(module: ModuleOp, target: str, workdir: Path | None = None, threads: int = 1,
                  host_tiles: bool = True) -> CompiledModel:
    """Export `module` (graph to loop stage) for `target` and compile it for `threads` threads."""
    return compile_exported(export(module, target, host_tiles, threads), workdir, threads=threads)


def run_module(
    module: ModuleOp, target: str, inputs: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray],
    workdir: Path | None = None, threads: int = 1,
) -> list[np.ndarray]:
    """Like `reference.run_module`, through the MLIR toolchain; outputs are logical arrays."""
    return compile_model(module, target, workdir, threads).run(inputs, weights)
