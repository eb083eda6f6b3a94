"""export-mlir and the MLIR backend: every sample, every target's tiling, through the real MLIR toolchain."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from strata.compiler import ir
from strata.compiler.execution import native, reference
from strata.compiler.cli import main
from strata.compiler.diagnostics import StrataError
from strata.compiler.testing.properties import compare_outputs
from strata.compiler.driver import Stage, compile_module, detect_stage
from strata.compiler.frontend import load_model
from strata.passes import export_mlir
from strata.passes.export_mlir import UPSTREAM_DIALECTS
from tests.support import REDUCED, TINY, assert_close, sample_values

needs_mlir = pytest.mark.skipif(
    not native.tools_available(),
    reason="the MLIR/LLVM 22 tools are not installed (apt-get install mlir-22-tools llvm-22)",
)

needs_openmp = pytest.mark.skipif(
    not native.OPENMP_LIBRARY.exists(), reason="LLVM's OpenMP runtime is not installed (apt-get install libomp-22-dev)"
)


ZOO = Path(__file__).parent / "export_mlir_zoo.model"


def _export(name: str, target: str):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    compile_module(module, target, Stage.MLIR)
    return module


def test_export_holds_only_upstream_ops():
    module = _export("gpt2", "tpu")
    names = {op.name for op in module.walk()}
    assert {n.split(".")[0] for n in names} <= set(UPSTREAM_DIALECTS)
    assert {"linalg.generic", "scf.for", "memref.load", "memref.store", "func.call"} <= names
    assert detect_stage(module) == Stage.MLIR
    # The kernels keep the compiler's decisions; the model function has the C interface.
    funcs = [op for op in module.ops if op.name == "func.func"]
    assert any("strata.tile_sizes" in f.attributes for f in funcs)
    assert "llvm.emit_c_interface" in funcs[-1].attributes
    # It prints and parses back (detect_stage resumes from a dump).
    text = ir.print_module(module)
    assert detect_stage(ir.parse_module(text, "dump.mlir")) == Stage.MLIR


def test_buffers_keep_their_physical_layout():
    """A (8, 128)-tiled TPU buffer is exported with its physical shape [.., outer, 8, 128]."""
    module = _export("mlp", "tpu")
    text = ir.print_module(module, debuginfo=False)
    assert "memref<1x7x8x128xf32>" in text  # x: f32[4, 784] in tiles of (8, 128)


@needs_mlir
@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu", "cpu"])
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_sample_verifies_and_runs_as_the_reference(name, target, tmp_path):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.MLIR)
    # mlir-opt-22 parses and verifies the export as printed, locations included.
    path = tmp_path / "export.mlir"
    path.write_text(ir.print_module(module))
    native.verify_mlir(path)
    got = native.compile_exported(module, tmp_path / "build", opt_level=1).run(inputs, params)
    assert_close(want, got)


@needs_mlir
@pytest.mark.parametrize("target", ["gpu", "tpu"])
def test_every_language_op_runs_as_the_reference(target):
    """Ops the samples do not use: int and low-precision dtypes, pools with padding, grouped conv, ..."""
    module = load_model(str(ZOO), {})
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    got = native.run_module(module, target, inputs, params)
    # Dtypes and shapes equal, NaN and infinities in the same places, integers equal, floats within 1e-4.
    assert compare_outputs(want, got, 1e-4) is None


@needs_mlir
@pytest.mark.parametrize("sizes", ["2,3,5"])
@pytest.mark.parametrize("name", ["llama", "resnet18", "vit"])
def test_small_tiles_run_as_the_reference(name, sizes):
    """Many tiles, edge tiles and reduction loops of several steps."""
    from strata.compiler.driver import detect_stage as stage_of, passes_between, run_passes, DumpOptions
    from strata.compiler.schedule import apply_schedule

    module = load_model(f"samples/{name}.model", TINY[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    passes = apply_schedule(passes_between("tpu", stage_of(module), Stage.MLIR), {"sizes": sizes})
    run_passes(ir.make_context(), module, passes, DumpOptions())
    assert_close(want, native.compile_exported(module, opt_level=1).run(inputs, params))


@needs_mlir
def test_cli_emit_mlir_and_run_backend_mlir(tmp_path, capsys):
    model = ["samples/mlp.model", "-D", "B=4"]
    out = tmp_path / "mlp.mlir"
    assert main(["compile", *model, "--emit", "mlir", "--target", "tpu", "-o", str(out)]) == 0
    names = {op.name for op in ir.parse_module(out.read_text(), str(out)).walk()}
    assert "linalg.generic" in names and not any(n.startswith(("graph.", "loop.")) for n in names)
    subprocess.run([native.find_tool("mlir-opt-22"), str(out), "-o", "/dev/null"], check=True)
    assert main(["run", *model, "--backend", "mlir", "--target", "tpu", "-o", str(tmp_path / "m.npz")]) == 0
    assert main(["run", *model, "-o", str(tmp_path / "r.npz")]) == 0
    capsys.readouterr()
    mlir_out, ref_out = np.load(tmp_path / "m.npz"), np.load(tmp_path / "r.npz")
    assert_close([ref_out[k] for k in ref_out.files], [mlir_out[k] for k in mlir_out.files])


def test_emit_mlir_skips_lower_to_hardware():
    from strata.compiler.driver import passes_between

    names = [p.name for p in passes_between("gpu", Stage.GRAPH, Stage.MLIR)]
    assert names[-2:] == ["lower-to-loops", "export-mlir"]
    assert "lower-to-hardware" not in names
    with pytest.raises(StrataError, match="loop-stage"):
        passes_between("gpu", Stage.HARDWARE, Stage.MLIR)


def test_missing_tool_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(native, "LLVM_BIN", Path("/nonexistent"))
    with pytest.raises(StrataError, match="apt-get install mlir-22-tools"):
        native.find_tool("mlir-opt-22")
    assert main(["run", "samples/mlp.model", "-D", "B=4", "--backend", "mlir"]) == 1
    assert "apt-get install mlir-22-tools" in capsys.readouterr().err


@needs_mlir
def test_failing_tool_shows_command_and_stderr(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f() {\n  %0 = arith.addf : f32\n}\n")
    with pytest.raises(StrataError) as err:
        native.build_shared_library(bad, tmp_path)
    message = str(err.value)
    assert "mlir-opt-22" in message and str(bad) in message and "error" in message


# --------------------------------------------------------------------------- the CPU code: micro-kernel, threads

GEMMS = """model gemms(x: f32[37, 96], w: f32[96, 45], v: f32[83, 96], y: f32[1, 40, 96]) {
  a = relu(x @ w)
  b = x @ transpose(v)
  c = y @ w
  return a, b, c
}
"""
"""Rows no register block divides (37, 40), columns no vector divides (45, 83: masked edge strips),
a transposed operand (packed by 16 x 16 register transposes, else element by element at the
buffer's edge) and a leading unit dim."""


def _gemms(tmp_path, sizes: str | None = None):
    from strata.compiler.driver import DumpOptions, passes_between, run_passes
    from strata.compiler.schedule import apply_schedule

    path = tmp_path / "gemms.model"
    path.write_text(GEMMS)
    module = load_model(str(path), {})
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    passes = passes_between("gpu", detect_stage(module), Stage.MLIR)
    if sizes is not None:
        passes = apply_schedule(passes, {"sizes": sizes})
    run_passes(ir.make_context(), module, passes, DumpOptions())
    return module, inputs, params, want


def test_gemm_tiles_take_the_vector_micro_kernel(tmp_path):
    module, *_ = _gemms(tmp_path, "16,32,32")
    names = [op.name for op in module.walk()]
    # One FMA per row and vector of the register block; the output-tile loop runs in parallel.
    assert names.count("vector.fma") >= 8 and "scf.parallel" in names
    assert "vector.shuffle" in names  # the transposed operand's 16 x 16 register transposes


def test_gemm_prefetches_the_next_tiles_and_copies_by_vectors(tmp_path):
    """
    The micro-kernel prefetches the next tile of a `b` whose rows lie under
    a page apart (reads) and the next output tile (writes); a [1, 16, 32]
    tile of `a` (a leading unit dim) is copied by vectors. The printed
    export reads back (`memref.prefetch` is registered).
    """
    module, *_ = _gemms(tmp_path, "16,32,32")
    prefetches = [op for op in module.walk() if op.name == "memref.prefetch"]
    kinds = {(op.memref.type.get_shape(), bool(op.is_write.value.data)) for op in prefetches}
    assert ((83, 96), False) in kinds  # v's rows are 384 B apart
    assert ((37, 45), True) in kinds and ((1, 40, 45), True) in kinds
    # y's tiles by vectors (element by element only where a tile crosses the 40 rows' edge).
    reads = [op for op in module.walk() if op.name == "vector.transfer_read"]
    assert any(op.operands[0].type.get_shape() == (1, 40, 96) for op in reads)
    text = ir.print_module(module)
    assert "memref.prefetch" in ir.print_module(ir.parse_module(text, "dump.mlir"))


@needs_mlir
def test_elementwise_ops_of_one_shape_run_as_one_flat_loop(tmp_path):
    """
    `x * y + x` over 64 x 40 is one 2560-element loop per op; a broadcast operand keeps the nest
    (rows of 40 are not short, `SHORT_ROWS`). Values as the reference's.
    """
    from strata.compiler.frontend import compile_source

    source = "model m(x: f32[64, 40], y: f32[64, 40], r: f32[64, 1]) {\n  return (x * y + x) * r\n}\n"
    module = compile_source(source, "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    generics = [op for op in module.walk() if op.name == "linalg.generic"]
    ranks = sorted(len(op.iterator_types) for op in generics)
    assert ranks == [1, 1, 2]  # mul and add flat; the multiply by the broadcast column keeps 2 dims
    assert any(op.name == "tensor.collapse_shape" for op in module.walk())
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


def _exported(source: str):
    """A model's source exported for the cpu, with its sample values and what the reference computes."""
    from strata.compiler.frontend import compile_source

    module = compile_source(source, "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    return module, inputs, params, want


@needs_mlir
def test_short_rows_are_one_masked_vector_each(tmp_path):
    """
    Row-wise ops over rows of 9 to 31 elements (softmax, the norms, f32 and bf16, reductions over
    the last dim, an op broadcasting a per-row value) are loops over the rows, each row one
    masked vector, its sums `vector.reduction`s and its maxima halvings of the vector (`tree_reduce`);
    the whole-buffer stores are one flat
    loop. Values as the reference's through the native build.
    """
    from strata.dialects.hardware.cpu import SHORT_ROWS

    module, inputs, params, want = _exported(
        "model m(x: f32[64, 10], y: f32[3, 5, 24], z: bf16[16, 16], u: f32[8, 31]) {\n"
        "  param g: f32[24]\n  param b: f32[24]\n  param h: bf16[16]\n"
        "  return softmax(x, axis=-1), layernorm(y, g, b), rmsnorm(z, h), sum(x, axis=-1),"
        " max(y, axis=-1, keepdims=true), mean(u, axis=1), u * sum(u, axis=-1, keepdims=true) + u\n}\n"
    )
    reductions = [op for op in module.walk() if op.name == "vector.reduction"]
    halvings = [op for op in module.walk() if op.name == "vector.shuffle"]
    # Sums: softmax 1, layer norm 2, RMS norm 1, sum, mean and the broadcast's sum 1 each; the
    # softmax's and the model's max halve their vectors (4 shuffle pairs of 16 lanes, 5 of 32).
    assert len(reductions) == 7
    assert len(halvings) == 2 * (4 + 5)
    generics = [op for op in module.walk() if op.name == "linalg.generic"]
    # No loop nest walks a short row: every generic left is flat or over the per-row values.
    assert all(len(op.iterator_types) == 1 or op.results[0].type.get_shape()[-1] not in SHORT_ROWS for op in generics)
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


@needs_mlir
def test_long_rows_reduce_as_they_go_and_write_no_tile_but_the_result(tmp_path):
    """
    Softmax and the norms over long rows (`Emitter.reduce_of`): every float sum's adds may
    reassociate (LLVM vectorises them); a norm reduces its (centred) squares as it makes them and
    reads a bf16 input in its own type, so its generics write the per-row values and the result
    only; a softmax one tile, its exponentials. Values as the reference's through the native build.
    """
    module, inputs, params, want = _exported(
        "model m(x: f32[4, 300], y: bf16[2, 3, 64], z: bf16[5, 130]) {\n"
        "  param g: bf16[64]\n  param b: bf16[64]\n  param h: bf16[130]\n"
        "  return softmax(x, axis=-1), layernorm(y, g, b), rmsnorm(z, h), log_softmax(z, axis=-1), sum(x, axis=0)\n}\n"
    )
    generics = [op for op in module.walk() if op.name == "linalg.generic"]
    # What each reducing generic yields: a sum's add reassociates, a max is a max.
    yielded = [op.body.block.last_op.operands[0].owner for op in generics if "reduction" in str(op.iterator_types)]
    assert {op.name for op in yielded} == {"arith.addf", "arith.maximumf"}
    assert all("reassoc" in str(op.fastmath) for op in yielded if op.name == "arith.addf")
    # Whole-shape f32 tiles: the f32 softmax's exponentials and its result; none of the bf16 norms
    # and log-softmax, which read bf16 and write their bf16 results.
    full = [op for op in generics if op.results and list(op.results[0].type.get_shape()) in ([4, 300], [2, 3, 64], [5, 130])
            and str(op.results[0].type.element_type) == "f32"]
    assert len(full) == 2
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


@needs_mlir
def test_long_rows_are_copied_by_a_loop_of_vectors(tmp_path):
    """
    A [1, 65536] tile is copied in a loop of 8 vectors a step, not 4096 unrolled transfers (an
    export mlir-opt took over 15 minutes to bufferize); the values are the reference's.
    """
    from strata.compiler.frontend import compile_source

    module = compile_source("model m(x: f32[2, 65536], y: f32[2, 65536]) {\n  return x * y\n}\n", "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    writes = [op for op in module.walk() if op.name == "vector.transfer_write"]
    assert 0 < len(writes) <= 4 * export_mlir.VECTORS_PER_STEP
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


@needs_mlir
def test_slices_and_concatenations_of_the_last_dim_go_by_vectors(tmp_path):
    """
    RoPE's halves (Llama): a slice of the last dim of [1, 4, 8, 32] is copied by rows of vectors
    from the buffer collapsed to [32, 32], not element by element; a concatenation along the last
    dim writes whole vectors (operands of 256 columns are loops); a
    slice on a leading dim and a concatenation of rows that are not whole vectors keep the
    generics. Values as the reference's.
    """
    from strata.compiler.frontend import compile_source

    source = (
        "model m(x: f32[1, 4, 8, 32], c: f32[8, 32], y: f32[2, 3, 20], z: f32[2, 4, 256]) {\n"
        "  a = slice(x, axis=-1, start=16, end=32)\n  b = slice(x, axis=-1, start=0, end=16)\n"
        "  w = concat([z, z], axis=-1)\n"
        "  return x * c + concat([-a, b], axis=-1) * c, concat([y, y], axis=-1), slice(y, axis=1, start=1, end=3),"
        " w * 2.0\n}\n"
    )
    module = compile_source(source, "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    collapsed = [op for op in module.walk() if op.name == "memref.collapse_shape"]
    assert any(op.result.type.get_shape() == (32, 32) for op in collapsed)
    reads = [op for op in module.walk() if op.name == "vector.transfer_read" and op.operands[0].type.get_shape() == (32, 32)]
    assert reads  # the slices' rows
    loops = [op for op in module.walk() if op.name == "scf.for" and op.step.owner.value.value.data == 16]
    assert loops  # the 256-wide operands' rows: loops of vectors
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


@needs_mlir
def test_an_elementwise_op_computes_into_its_output_buffer(tmp_path):
    """
    A kernel whose last elementwise op makes its whole output (`loop.stores_in_place`) has that op's
    generic write the output buffer (a writable `to_tensor` of it), no store loop after it; a
    softmax's output, made by rows, is stored. Values as the reference's.
    """
    from strata.compiler.frontend import compile_source

    module = compile_source("model m(x: f32[64, 40], y: f32[64, 40]) {\n  return x * y + x, softmax(x, axis=-1)\n}\n",
                            "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    kernels = {op.sym_name.data: op for op in module.ops if op.sym_name.data.startswith("m_")}
    elementwise = next(k for name, k in kernels.items() if "elementwise" in name)
    writable = [op for op in elementwise.walk() if op.name == "bufferization.to_tensor" and op.writable]
    assert len(writable) == 1
    assert not [op for op in elementwise.walk() if op.name in ("memref.store", "vector.transfer_write")]
    row = next(k for name, k in kernels.items() if "row" in name)
    assert [op for op in row.walk() if op.name in ("memref.store", "vector.transfer_write")]
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


@needs_mlir
def test_an_embedding_lookup_copies_its_rows_by_vectors(tmp_path):
    """
    A gather from an f32 [V, D] table whose rows are whole vectors (`cpu.gathers_by_vectors`) is a
    loop over the ids copying each row by vectors, not a generic reading an id per element; a
    table of rows of 20 keeps the generic. Negative ids count from the end, as the reference's.
    """
    from strata.compiler.frontend import compile_source

    module = compile_source(
        "model m(ids: i32[2, 5], t: f32[7, 48], u: f32[7, 20]) {\n"
        "  return gather(t, ids) * 2.0, gather(u, ids)\n}\n", "m.model")
    inputs, params = sample_values(module)
    inputs["ids"] = np.array([[0, 6, -1, 3, -7], [2, 2, 5, 1, -3]], dtype=np.int32)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    kernels = {op.sym_name.data: op for op in module.ops if op.sym_name.data.startswith("m_gather")}
    by_vectors = [name for name, k in kernels.items()
                  if any(op.name == "vector.transfer_read" and op.operands[0].type.get_shape() == (7, 48) for op in k.walk())]
    assert len(by_vectors) == 1
    assert not [op for op in kernels[by_vectors[0]].walk() if op.name == "linalg.generic" and
                any(inner.name == "memref.load" for inner in op.walk())]
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


def _micro_kernel_widens(module) -> bool:
    """Whether a `vector.bitcast` (`Emitter.into_upper_bits`) runs in an `scf.for` holding `vector.fma`s
    (the micro-kernel's k loop widens `b`'s rows), and no generic converts a whole 2-D tile."""
    loops = [op for op in module.walk() if op.name == "scf.for"
             and any(inner.name == "vector.fma" for inner in op.body.block.ops)]
    widens = any(inner.name == "vector.bitcast" for op in loops for inner in op.walk())
    tiles = [op for op in module.walk() if op.name == "linalg.generic"
             and any(inner.name in ("arith.sitofp", "arith.bitcast", "arith.extf") for inner in op.walk())
             and len(op.results[0].type.get_shape()) == 2]
    return widens and not tiles


@needs_mlir
def test_a_weight_dequantized_for_a_bf16_gemm_is_widened_as_the_micro_kernel_reads_it(tmp_path):
    """
    `h @ dequantize(w, s, dtype=bf16)` computes in f32: the micro-kernel dequantizes each row vector
    of the weight's tile, rounds it to bf16 and widens it back in the registers (no f32 tile of the
    weight); the output is the reference's bit for bit, with scales that are NaN, infinite,
    subnormal, large enough that the rounding overflows, and halfway between two bf16s.
    """
    from strata.compiler.frontend import compile_source

    module = compile_source(
        "model m(h: bf16[1, 1, 64]) {\n  param w: i4[64, 48]\n  param s: f32[48]\n"
        "  return h @ dequantize(w, s, dtype=bf16)\n}\n", "m.model")
    inputs, params = sample_values(module)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 1e-40, -3e-39, 3.4e38, 1 + 2**-8, 1 + 3 * 2**-8],
                       dtype=np.float32)
    params["s"] = np.asarray(params["s"], dtype=np.float32).copy()
    params["s"][: len(special)] = special
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    assert _micro_kernel_widens(module)
    got = native.compile_exported(module, tmp_path).run(inputs, params)
    np.testing.assert_array_equal(np.asarray(want[0], dtype=np.float32), np.asarray(got[0], dtype=np.float32))


@needs_mlir
@needs_openmp
def test_a_dequantized_weight_takes_the_loop_without_nan_tests_where_its_scales_are_finite(tmp_path):
    """
    `dequantized_rows(finite=True)`: a weight whose scales are all finite (`scales_finite`, tested
    once a call, before the kernel's loops) is widened without the rounding's NaN test, one with a
    NaN or an infinite scale with it. With finite scales only (subnormal ones, ones whose products
    round up to infinity and ones halfway between two bf16s), and with NaN and infinite ones
    added, on 1 and 2 threads (the weight's two column tiles): the output is 1 thread's bit for
    bit, the reference's in those columns, and within a bf16 step of it in the others (the
    reference sums the 512 products in another order).
    """
    from strata.compiler import measure
    from strata.compiler.frontend import compile_source
    from strata.dialects import loop

    module = compile_source("model m(h: bf16[1, 1, 512]) {\n  param w: i4[512, 4096]\n  param s: f32[4096]\n"
                            "  return h @ dequantize(w, s, dtype=bf16)\n}\n", "m.model")
    inputs, params = sample_values(module)
    loops = measure.to_loops(module, "cpu", threads=2)
    (weight,) = [op for op in loops.walk() if isinstance(op, loop.LoadOp) and op.source.type.get_shape()[0] == 512]
    assert tuple(weight.result.type.get_shape())[1] == 2048 and loop.reads_in_place(weight)
    exported = native.export(module, "cpu", True, 1)
    (choice,) = [op for op in exported.walk() if op.name == "scf.if"
                 and all(any(inner.name == "vector.fma" for inner in region.walk()) for region in op.regions)]
    assert choice.operands[0].owner.parent_op().name == "func.func"  # tested before the loops
    finite = np.asarray(params["s"], dtype=np.float32).copy()
    finite[2048:2054] = [1e-40, -3e-39, 3.4e38, -3.4e38, 1 + 2**-8, 1 + 3 * 2**-8]
    not_finite = finite.copy()
    not_finite[:4] = [np.nan, -np.inf, np.inf, 1e-40]
    special = [*range(4), *range(2048, 2054)]
    for n, scales in enumerate((finite, not_finite)):
        params["s"] = scales
        want = np.asarray(reference.run_module(module, inputs, params)[0], dtype=np.float32)
        one, two = (np.asarray(native.run_module(module, "cpu", inputs, params, tmp_path / f"{n}_{t}", threads=t)[0],
                               dtype=np.float32) for t in (1, 2))
        np.testing.assert_array_equal(one, two)
        np.testing.assert_array_equal(two[..., special], want[..., special])
        np.testing.assert_allclose(two, want, rtol=2**-7)


@needs_mlir
def test_a_bf16_weight_is_widened_as_the_micro_kernel_reads_it(tmp_path):
    """`h @ w` with a bf16 weight: the micro-kernel widens each row vector of `w`'s tile in the
    registers (no f32 copy of the tile); the output is the reference's bit for bit."""
    from strata.compiler.frontend import compile_source

    module = compile_source("model m(h: bf16[1, 1, 64]) {\n  param w: bf16[64, 80]\n  return h @ w\n}\n", "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "cpu", Stage.MLIR)
    assert _micro_kernel_widens(module)
    got = native.compile_exported(module, tmp_path).run(inputs, params)
    np.testing.assert_array_equal(np.asarray(want[0], dtype=np.float32), np.asarray(got[0], dtype=np.float32))


@needs_mlir
def test_a_gemv_reads_its_weights_slabs_where_they_lie(tmp_path):
    """
    A product of one row reads its weight's tiles of whole rows in place (`loop.reads_in_place`):
    each is a `tensor.extract_slice` of the weight's buffer, not a copy, for an f32 weight (read
    unpacked), a bf16 one and an int4 one dequantized to bf16 (widened in the registers). The
    outputs are the reference's (the bf16 ones bit for bit; f32 sums in another order).
    """
    from strata.compiler.frontend import compile_source

    bodies = {
        "f32": "model m(h: f32[1, 1, 96]) {\n  param w: f32[96, 200]\n  return h @ w\n}\n",
        "bf16": "model m(h: bf16[1, 1, 96]) {\n  param w: bf16[96, 200]\n  return h @ w\n}\n",
        "i4": "model m(h: bf16[1, 1, 96]) {\n  param w: i4[96, 200]\n  param s: f32[200]\n"
              "  return h @ dequantize(w, s, dtype=bf16)\n}\n",
    }
    for name, body in bodies.items():
        module = compile_source(body, "m.model")
        inputs, params = sample_values(module)
        want = reference.run_module(module, inputs, params)
        compile_module(module, "cpu", Stage.MLIR)
        views = [op for op in module.walk() if op.name == "tensor.extract_slice"
                 and op.operands[0].owner.name == "bufferization.to_tensor"
                 and tuple(op.operands[0].type.get_shape()) == (96, 200)]
        assert views and all(tuple(v.results[0].type.get_shape())[1] == 200 for v in views), name
        got = native.compile_exported(module, tmp_path / name).run(inputs, params)
        want, got = (np.asarray(x[0], dtype=np.float32) for x in (want, got))
        if name == "f32":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)


def test_vector_copies_take_rows_of_whole_vectors():
    """Only tiles whose rows are whole vectors are copied by vectors (a [1, 16, 12] tile is not: a
    16-lane write would run past each row of its tensor)."""
    from xdsl.dialects.builtin import f32

    from strata.dialects.graph.layout import LayoutAttr
    from strata.passes.export_mlir import _vector_copyable

    row_major = LayoutAttr([0, 1, 2])
    assert _vector_copyable(row_major, (1, 16, 48), f32, None)
    assert not _vector_copyable(row_major, (1, 16, 12), f32, None)
    assert not _vector_copyable(row_major, (2, 16, 48), f32, None)


@needs_mlir
@pytest.mark.parametrize("sizes", [None, "16,32,32"])
def test_micro_kernel_edges_run_as_the_reference(tmp_path, sizes):
    module, inputs, params, want = _gemms(tmp_path, sizes)
    got = native.compile_exported(module, tmp_path / "build", opt_level=1).run(inputs, params)
    assert_close(want, got)


@needs_mlir
@needs_openmp
@pytest.mark.parametrize("threads", [2, 3])
def test_threads_compute_what_one_thread_does(tmp_path, threads):
    """Every thread count gives the reference's values (each output element is summed in the same order)."""
    module, inputs, params, want = _gemms(tmp_path, "16,32,32")
    one = native.compile_exported(module, tmp_path / "one", opt_level=1).run(inputs, params)
    many = native.compile_exported(module, tmp_path / "many", opt_level=1, threads=threads).run(inputs, params)
    assert_close(want, many)
    for a, b in zip(one, many, strict=True):
        assert np.array_equal(a, b)


@needs_mlir
@needs_openmp
def test_the_tiles_cut_for_more_threads_give_the_same_bits(tmp_path):
    """On 2 threads `tile` cuts the MLP's first GEMM in two (one tile per thread); each output element is still
    summed over k in the same order, so the values are one thread's, bit for bit."""
    from strata.backends.cost import model_function
    from strata.compiler import measure
    from strata.compiler.execution import weights
    from strata.dialects import loop

    module = load_model("samples/mlp.model", {})
    tiles = {}
    for threads in (1, 2):
        loops = measure.to_loops(module, "cpu", threads=threads)
        tiles[threads] = [k.tile_sizes.get_values() for k in loops.walk() if isinstance(k, loop.KernelOp)][0]
    assert tiles[1] != tiles[2]
    bound = weights.bind_values(model_function(module), 0)
    one, two = (native.run_module(module, "cpu", bound.inputs, bound.params, tmp_path / str(t), threads=t)
                for t in (1, 2))
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))


@needs_mlir
@needs_openmp
def test_a_gemv_split_by_columns_for_threads_reads_its_weight_in_place(tmp_path):
    """On 2 threads `tile` splits a decode GEMV's whole rows by columns; each thread's tile of the
    weight is a window of it, a run per row (`loop.in_place_window`), still read where it lies; the
    values are one thread's and the reference's, bit for bit."""
    from strata.backends.cost import model_function
    from strata.compiler import measure
    from strata.compiler.execution import weights
    from strata.compiler.frontend import compile_source
    from strata.dialects import loop

    module = compile_source("model m(h: bf16[1, 1, 512]) {\n  param w: bf16[512, 4096]\n  return h @ w\n}\n", "m.model")
    loops = measure.to_loops(module, "cpu", threads=2)
    (weight,) = [op for op in loops.walk() if isinstance(op, loop.LoadOp) and op.source.type.get_shape()[0] == 512]
    rows, columns = weight.result.type.get_shape()
    assert rows <= loop.STREAMED_ROWS and columns < 4096 and loop.reads_in_place(weight)
    bound = weights.bind_values(model_function(module), 0)
    want = reference.run_module(module, bound.inputs, bound.params)
    one, two = (native.run_module(module, "cpu", bound.inputs, bound.params, tmp_path / str(t), threads=t)
                for t in (1, 2))
    for a, b, c in zip(want, one, two, strict=True):
        assert np.array_equal(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
        assert np.array_equal(np.asarray(b, dtype=np.float32), np.asarray(c, dtype=np.float32))


@needs_mlir
def test_a_float_max_pool_propagates_nan_as_the_reference(tmp_path):
    """The f32 max pool's compare-and-select keeps `maximumf`'s NaN: every window holding one is NaN."""
    from strata.compiler.frontend import compile_source

    source = "model p(x: f32[1, 2, 8, 8]) {\n  return maxpool2d(x, kernel=3, stride=2, padding=1)\n}\n"
    module = compile_source(source, "p.model")
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    x[0, 0, 3, 4], x[0, 1, 0, 0] = np.nan, -np.inf
    (want,) = reference.run_module(module, {"x": x}, {})
    (got,) = native.run_module(module, "cpu", {"x": x}, {}, tmp_path)
    assert np.isnan(want).sum() == 2  # rows 1-3 and 3-5, columns 3-5
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


@needs_mlir
def test_a_padded_pool_copies_its_input_by_a_generic(tmp_path):
    """
    Padding is a filled tile with the input copied into its interior by a `linalg.generic` (a
    vectorised loop), not a `tensor.pad`, whose zeros bufferized to a `memref.copy` the runtime
    walked element by element. Values as the reference's through the native build.
    """
    module, inputs, params, want = _exported(
        "model p(x: f32[1, 3, 9, 8]) {\n"
        "  return avgpool2d(x, kernel=3, stride=2, padding=1), maxpool2d(x, kernel=2, stride=1, padding=1)\n}\n"
    )
    names = [op.name for op in module.walk()]
    assert "tensor.pad" not in names and "tensor.insert_slice" in names
    assert_close(want, native.compile_exported(module, tmp_path).run(inputs, params))


def test_openmp_threads_are_spread_over_the_cores_unless_the_caller_says_otherwise(monkeypatch):
    """Each OpenMP thread gets a core of its own (`OMP_PROC_BIND=spread`, `OMP_PLACES=cores`); a caller's setting stays."""
    monkeypatch.delenv("OMP_PLACES", raising=False)
    monkeypatch.setenv("OMP_PROC_BIND", "close")
    native._spread_threads()
    assert native.os.environ["OMP_PLACES"] == "cores"
    assert native.os.environ["OMP_PROC_BIND"] == "close"


@needs_mlir
@needs_openmp
def test_cli_run_threads(tmp_path, capsys):
    model = ["samples/gpt2.model", *(f"-D{k}={v}" for k, v in REDUCED["gpt2"].items())]
    assert main(["run", *model, "--backend", "mlir", "--threads", "2", "-o", str(tmp_path / "m.npz")]) == 0
    assert main(["run", *model, "-o", str(tmp_path / "r.npz")]) == 0
    mlir_out, ref_out = np.load(tmp_path / "m.npz"), np.load(tmp_path / "r.npz")
    assert_close([ref_out[k] for k in ref_out.files], [mlir_out[k] for k in mlir_out.files])
    with pytest.raises(SystemExit):
        main(["run", *model, "--backend", "mlir", "--threads", "0"])
    assert "a thread count is between 1 and 256" in capsys.readouterr().err


def test_host_gemm_tiles_replace_the_targets_for_gemms():
    module = load_model("samples/mlp.model", {})
    exported = native.export(module, "gpu")
    tiles = {op.attributes["strata.kernel"].data: list(op.attributes["strata.tile_sizes"].get_values())
             for op in exported.ops if "strata.tile_sizes" in op.attributes}
    assert tiles["gemm_0"] == [64, 256, 112]  # rows clamped to 64, K to the largest divisor of 784 under 128
    target = native.export(module, "gpu", host_tiles=False)
    assert any(list(op.attributes["strata.tile_sizes"].get_values()) != tiles.get(op.attributes["strata.kernel"].data)
               for op in target.ops if "strata.tile_sizes" in op.attributes)


CONV_SHAPES = """let N = 1
let C = 16
let O = 16
let HW = 16
let ST = 1
model conv(x: f32[N, C, HW, HW]) {
  param w: f32[O, C, 3, 3]
  param b: f32[O]
  return conv2d(x, w, b, stride=ST, padding=1)
}
"""


@needs_mlir
@pytest.mark.parametrize("sizes, packing", [
    ({"HW": 64, "ST": 2}, (1, 32)),  # 32 x 32 outputs: a strip is 32 columns of one row
    ({"HW": 16}, (2, 16)),  # a strip is two whole rows of 16
    ({"C": 32, "O": 64, "HW": 4}, (4, 4)),  # 16 columns a strip (8 x 16 block): four rows of 4
    ({"HW": 15}, None),  # 225 columns: gathered row-major, the last strip masked
    ({"C": 256, "O": 256, "HW": 2}, None),  # 4 columns; the weight in tiles of 64 output channels
    ({"N": 2, "HW": 16}, (2, 16)),  # two images' columns side by side, transposed back
    ({"N": 3, "C": 8, "O": 24, "HW": 5}, None),  # 75 columns over three images: row-major
])
def test_implicit_gemm_convolutions_run_as_the_reference(tmp_path, sizes, packing):
    """The conv's patches packed by column strips where a strip is an output rectangle, row-major elsewhere."""
    from strata.dialects.graph import ops as g
    from strata.passes._linalg import implicit_gemm_packing

    from strata.compiler.frontend import compile_source

    module = compile_source(CONV_SHAPES, "conv.model", sizes)
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    (conv,) = [op for op in module.walk() if isinstance(op, g.Conv2DOp)]
    assert implicit_gemm_packing(conv) == packing
    got = native.run_module(module, "cpu", inputs, params, workdir=tmp_path)
    assert compare_outputs(want, got, 1e-4) is None


INT8_CONV = """let N = 1
let C = 16
let O = 16
let HW = 16
model conv(x: i8[N, C, HW, HW]) {
  param w: i8[O, C, 3, 3]
  return conv2d(x, w, stride=2, padding=1, dtype=i32)
}
"""


@needs_mlir
@pytest.mark.parametrize("sizes", [{}, {"N": 2, "C": 3, "O": 8, "HW": 9}])
def test_integer_convolutions_run_as_an_exact_product_over_their_patches(tmp_path, sizes):
    """An int8 conv (no micro-kernel) as `W[O, K] @ cols[K, N*Y*X]` in i32, exact, one image or several."""
    from strata.compiler.frontend import compile_source

    module = compile_source(INT8_CONV, "conv.model", sizes)
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    got = native.run_module(module, "cpu", inputs, params, workdir=tmp_path)
    assert compare_outputs(want, got, 0) is None



# The scale product `sx * sw` reads params alone and is no larger than them: it runs at load. The
# cast of `w` reads a param alone but doubles its bytes: it stays in the call, as a dequantized
# copy of a weight would.
AT_LOAD = """model m(x: i8[4, 8]) {
  param wq: i8[8, 16]
  param sx: f32[1]
  param sw: f32[16]
  param w: f16[16, 16]
  y = dequantize(matmul(x, wq, dtype=i32), sx * sw)
  return y @ cast(w, dtype=f32)
}
"""


def test_work_on_params_alone_is_planned_at_load_unless_it_grows():
    from strata.backends.cost import model_function
    from strata.compiler.frontend import compile_source
    from strata.dialects import loop

    module = compile_source(AT_LOAD, "m.model")
    compile_module(module, "cpu", Stage.LOOP)
    plan = loop.load_plan(model_function(module))
    assert [op.kernel_name.data for op in plan.ops] == ["elementwise_0"]
    assert plan.prepared == tuple(op.outs[0] for op in plan.ops) and plan.written == set(plan.prepared)
    kernels = [op for op in model_function(module).body.block.ops if isinstance(op, loop.KernelOp)]
    assert [k.kernel_name.data for k in kernels if k not in plan.ops] == ["gemm_0", "elementwise_1", "gemm_1"]


def test_an_output_is_never_written_at_load():
    """A result computed from params alone is still computed on every call: the caller's output buffer."""
    from strata.backends.cost import model_function
    from strata.compiler.frontend import compile_source
    from strata.dialects import loop

    module = compile_source("model m(x: f32[4]) {\n  param s: f32[4]\n  param t: f32[4]\n  return s * t\n}\n", "m.model")
    compile_module(module, "cpu", Stage.LOOP)
    assert not loop.load_plan(model_function(module)).ops


@needs_mlir
def test_work_at_load_runs_once_and_every_call_reads_it(tmp_path):
    from strata.compiler.frontend import compile_source

    module = compile_source(AT_LOAD, "m.model")
    inputs, params = sample_values(module)
    model = native.compile_model(module, "cpu", tmp_path)
    assert model.load_entry is not None and len(model.prepared_types) == 1
    assert_close(reference.run_module(module, inputs, params), model.run(inputs, params))
    # Other params: `run` loads them again.
    other = {**params, "sw": params["sw"] * 3}
    assert_close(reference.run_module(module, inputs, other), model.run(inputs, other))
    # `prepare` loads once; every call reads what it prepared.
    call, outputs = model.prepare(inputs, params)
    for _ in range(2):
        call()
        assert_close(reference.run_module(module, inputs, params), outputs)


def test_a_relayout_that_keeps_the_element_order_is_one_memcpy():
    """A 1x1 convolution's OIHW -> OHWI weight (channels-last pinned) holds its elements in the same order: a
    flat `memref.copy`, no loop."""
    from strata.compiler.driver import passes_between
    from strata.compiler.frontend import compile_source
    from strata.compiler.schedule import apply_schedule

    source = "model c(x: f32[1, 8, 4, 4]) {\n  param w: f32[16, 8, 1, 1]\n  return conv2d(x, w)\n}\n"
    module = compile_source(source, "c.model")
    passes = apply_schedule(passes_between("cpu", Stage.GRAPH, Stage.MLIR), {"channels_last": "true"})
    compile_module(module, "cpu", Stage.MLIR, pipeline=passes)
    load = next(op for op in module.ops if op.sym_name.data == "c_load")
    names = [op.name for op in load.walk()]
    assert "memref.copy" in names and "scf.for" not in names
    copy = next(op for op in load.walk() if op.name == "memref.copy")
    assert copy.source.type.get_shape() == copy.destination.type.get_shape() == (128,)


@needs_mlir
def test_exp_is_within_two_ulp_over_the_whole_range(tmp_path):
    """
    `Emitter.exp` (a polynomial, no libm): within 2 ulp of e^x over [-110, 90] in f32, results
    under the normal range subnormal as the correctly rounded ones are (within 2 of their ulp), 0
    below the subnormals, infinity above the largest float, and e^-inf = 0, e^inf = inf, NaN kept.
    """
    from strata.compiler.frontend import compile_source

    x = np.concatenate([np.linspace(-110, 90, 40_000, dtype=np.float32),
                        np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1e-30, -87.5, -103.5, 88.7, 88.8],
                                 dtype=np.float32)])
    module = compile_source(f"model m(x: f32[{x.size}]) {{\n  return exp(x)\n}}\n", "m.model")
    compile_module(module, "cpu", Stage.MLIR)
    (got,) = native.compile_exported(module, tmp_path).run({"x": x}, {})
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64)).astype(np.float32)
    special = ~np.isfinite(want) | (want == 0)
    np.testing.assert_array_equal(got[special], want[special])
    ulp = np.spacing(np.maximum(want[~special], np.float32(1e-45)))
    assert np.max(np.abs(got[~special].astype(np.float64) - want[~special]) / ulp) <= 2


@needs_mlir
def test_softmax_makes_no_subnormal_probability(tmp_path):
    """
    A softmax's exponentials under its row's length times the smallest normal float are 0
    (`Emitter.exp` with a floor: multiplies and divides that make or read subnormals take
    microcode assists on Intel cores), so no probability is subnormal, long rows and short alike;
    every other is the reference's within f32 rounding.
    """
    from strata.compiler.frontend import compile_source
    from strata.passes._linalg import EXP_FLUSH_BELOW

    for n in (257, 12):
        x = np.zeros((2, n), np.float32)
        x[:, 1::2] = -np.linspace(80.0, 100.0, n // 2, dtype=np.float32)
        module = compile_source(f"model m(x: f32[2, {n}]) {{\n  return softmax(x, axis=-1)\n}}\n", "m.model")
        compile_module(module, "cpu", Stage.MLIR)
        (got,) = native.compile_exported(module, tmp_path / str(n)).run({"x": x}, {})
        e = np.exp(x.astype(np.float64))
        want = e / e.sum(axis=-1, keepdims=True)
        tiny = np.finfo(np.float32).tiny
        assert np.any((want < tiny) & (want.astype(np.float32) > 0)), "the case must have subnormal probabilities"
        # Flushed: every probability whose exponential is under (about) its row's length times the
        # smallest normal; the row's largest score is 0.
        flushed = x < EXP_FLUSH_BELOW + np.log(n)
        assert np.all(got[flushed] == 0) and np.all(got[~flushed] >= tiny)
        np.testing.assert_allclose(got[~flushed], want[~flushed], rtol=1e-5)


@needs_mlir
def test_bf16_conversions_are_the_references_bit_for_bit(tmp_path):
    """f32 -> bf16 (`Emitter.bf16_bits`: to nearest, ties to even, subnormals kept, overflow to
    infinity, NaN quiet with its sign) and back (`Emitter.widen_bf16`) as ml_dtypes converts."""
    from strata.compiler.frontend import compile_source

    bits = np.array([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x00018000, 0x00008000, 0x80000001, 0x7F7FFFFF,
                     0x7F7F7FFF, 0xFF800000, 0x7F800001, 0xFFC00001, 0x00000000, 0x80000000], dtype=np.uint32)
    x = np.concatenate([bits.view(np.float32), np.random.default_rng(0).standard_normal(51, dtype=np.float32)])
    module = compile_source(f"model m(x: f32[{x.size}]) {{\n  return cast(cast(x, dtype=bf16) * 3.0, dtype=f32)\n}}\n",
                            "m.model")
    want = reference.run_module(module, {"x": x}, {})
    compile_module(module, "cpu", Stage.MLIR)
    got = native.compile_exported(module, tmp_path).run({"x": x}, {})
    np.testing.assert_array_equal(np.asarray(want[0], np.float32).view(np.uint32), np.asarray(got[0]).view(np.uint32))


@needs_mlir
@pytest.mark.slow
def test_drawn_row_functions_run_as_the_reference():
    """
    Models drawn with reductions, softmax, the norms and elementwise ops (every dtype the drawer
    has but f8, rows short and long) run natively for the cpu as the reference computes them, within
    the model's tolerance (`compare_outputs`: NaN and infinities in the same places).
    """
    from hypothesis import given, settings

    from strata.compiler.testing.fuzz import hypothesis_settings
    from strata.compiler.testing.random_models import DTYPES, models

    # f8 softmax and norms are an export error that says to cast them to f32.
    dtypes = [d for d in DTYPES if not d.startswith("f8")]

    @settings(**hypothesis_settings(60, shrink=False))
    @given(model=models(ops=["reduce", "softmax", "norm", "unary", "binary"], max_ops=4, dtypes=dtypes, blocks=False))
    def check(model):
        inputs, params = model.values()
        want = reference.run_module(model.module(), inputs, params)
        got = native.run_module(model.module(), "cpu", inputs, params)
        problem = compare_outputs(want, got, model.tolerance)
        assert problem is None, f"{problem}\n{model.text}"

    check()
