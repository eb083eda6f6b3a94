"""
The `strata` command line: check, compile, run and opt.

Every user error ends as a message on stderr and exit status 1; an internal
error (a bug in strata) prints a one-line report and exits 3, with the
traceback only when `STRATA_TRACEBACK=1` is set.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from compiler import ir
from compiler.diagnostics import StrataError
from compiler import loop_interpreter
from compiler.driver import STAGE_ORDER, DumpOptions, Stage, compile_module, detect_stage, run_passes
from compiler.frontend import load_model, read_source
from compiler.pipeline import parse_pipeline
from passes._targets import TARGETS
from compiler.stats import human, model_function, model_stats

MAX_RUN_ELEMENTS = 2**31
"""`strata run` refuses a model whose inputs and weights exceed this many elements."""


# --------------------------------------------------------------------------- shared helpers


def _define(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    try:
        return name, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"value of {name} must be an integer, got '{value}'") from None


def _add_defines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-D", dest="defines", metavar="NAME=VALUE", action="append", type=_define, default=[],
        help="override a `let` constant of the model (repeatable), e.g. -D S=16",
    )


def load_input(path: str, defines: list[tuple[str, int]]) -> ModuleOp:
    """A `.model` file through the frontend, or printed IR (`.mlir`) parsed back."""
    if path.endswith(".mlir") or path == "-":
        if defines:
            raise StrataError("error: -D applies to .model files, not to IR input")
        text = sys.stdin.read() if path == "-" else read_source(path)
        return ir.parse_module(text, "<stdin>" if path == "-" else path)
    return load_model(path, dict(defines))


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text)
    except OSError as err:
        raise StrataError(f"error: cannot write {output}: {err.strerror}") from None


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=TARGETS, default="gpu",
                        help="target machine: gpu (H100-class), tpu (systolic array), lpu (default: gpu)")


# --------------------------------------------------------------------------- commands


def cmd_check(args) -> int:
    module = load_input(args.model, args.defines)
    s = model_stats(module)
    print(
        f"{args.model}: ok: model '{s.name}', {s.ops} ops, {s.params} params"
        f" ({s.parameter_count:,} parameters), {human(s.flops, 'FLOP')}"
    )
    return 0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_compile(args) -> int:
    module = load_input(args.model, args.defines)
    dumps = DumpOptions(
        after_all=args.print_ir_after_all,
        after=frozenset(args.print_ir_after),
        after_change=args.print_ir_after_change,
        dump_dir=Path(args.dump_dir) if args.dump_dir else None,
        timing=args.timing,
        debuginfo=not args.no_debuginfo,
        stderr=_stderr,
    )
    pipeline = list(parse_pipeline(args.pass_pipeline).passes) if args.pass_pipeline else None
    compile_module(module, args.target, Stage(args.emit), dumps, pipeline)
    _write(ir.print_module(module, debuginfo=not args.no_debuginfo), args.output)
    return 0


def cmd_opt(args) -> int:
    module = load_input(args.file, [])
    if args.passes:
        passes = list(parse_pipeline(args.passes).passes)
        run_passes(ir.make_context(), module, passes, DumpOptions(debuginfo=not args.no_debuginfo))
    _write(ir.print_module(module, debuginfo=not args.no_debuginfo), args.output)
    return 0


def cmd_run(args) -> int:
    from compiler import reference, weights

    module = load_input(args.model, args.defines)
    fn = model_function(module)
    specs = weights.model_signature(fn)
    total = sum(int(np.prod(s.shape)) for s in specs)
    if total > MAX_RUN_ELEMENTS:
        raise StrataError(
            f"error: the model's inputs and weights hold {total:,} elements, too many to execute"
            f" here; shrink it with -D (e.g. -D S=16)"
        )
    rng = np.random.default_rng(args.seed)
    ranges = weights.integer_input_ranges(fn)
    inputs_spec = [s for s in specs if s.kind == "input"]
    params_spec = [s for s in specs if s.kind == "param"]
    given_inputs = weights.load_npz(args.inputs, inputs_spec, allow_missing=True) if args.inputs else {}
    given_weights = weights.load_npz(args.weights, params_spec, allow_missing=True) if args.weights else {}
    missing = [s for s in specs if s.name not in given_inputs and s.name not in given_weights]
    drawn = weights.random_values(missing, rng, ranges)
    inputs = {s.name: given_inputs.get(s.name, drawn.get(s.name)) for s in inputs_spec}
    params = {s.name: given_weights.get(s.name, drawn.get(s.name)) for s in params_spec}
    if args.through is not None:
        compile_module(module, args.target, Stage(args.through))
    runner = loop_interpreter if detect_stage(module) in (Stage.LOOP, Stage.HARDWARE) else reference
    outputs = runner.run_module(module, inputs, params)
    if args.output:
        weights.save_outputs(args.output, outputs)
    print(weights.summarize(outputs))
    if missing:
        print(
            f"({len(missing)} of {len(specs)} inputs and weights drawn at random, seed {args.seed})",
            file=sys.stderr,
        )
    return 0


# --------------------------------------------------------------------------- argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata",
        description="strata: an ML compiler. Compile .model files to graph, loop and hardware IR,"
        " execute them, and estimate their cost.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("check", help="parse, type-check and verify a model; print a summary",
                       description="Parse, type-check and verify MODEL, then print one line:"
                       " ops, params, parameter count and FLOPs.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed graph IR, .mlir)")
    _add_defines(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("compile", help="compile a model and print its IR",
                       description="Compile MODEL and print the IR of the stage chosen with --emit.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed IR, .mlir)")
    _add_defines(p)
    _add_target(p)
    p.add_argument("--emit", choices=[s.value for s in STAGE_ORDER], default=STAGE_ORDER[-1].value,
                   help=f"stage to stop at and print (default: {STAGE_ORDER[-1].value})")
    p.add_argument("-o", "--output", metavar="FILE", help="write the IR to FILE instead of stdout")
    p.add_argument("--no-debuginfo", action="store_true", help="omit loc(...) source locations")
    p.add_argument("--pass-pipeline", metavar="PIPELINE",
                   help="run these passes instead of the default pipeline, e.g. 'fuse{target=tpu epilogue=false}'")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass to stderr")
    p.add_argument("--print-ir-after", metavar="PASS", action="append", default=[],
                   help="print the IR after the named pass to stderr (repeatable)")
    p.add_argument("--print-ir-after-change", action="store_true",
                   help="print the IR after every pass that changed it, to stderr")
    p.add_argument("--dump-dir", metavar="DIR",
                   help="write the IR after each pass to DIR/NN-PASS.mlir, plus manifest.json")
    p.add_argument("--timing", action="store_true", help="print each pass's time and op counts to stderr")
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("run", help="execute a model with the NumPy reference",
                       description="Execute MODEL with the NumPy reference. Weights and inputs"
                       " missing from the .npz files are drawn from a seeded generator (integer"
                       " inputs used as gather ids stay in range of their table). Outputs are"
                       " written as out0, out1, ... and summarised on stdout.")
    p.add_argument("model", metavar="MODEL", help="a .model file or a printed graph module (.mlir)")
    _add_defines(p)
    p.add_argument("--weights", metavar="W.npz", help="weights keyed by param path (attn.0.w_qkv)")
    p.add_argument("--inputs", metavar="X.npz", help="inputs keyed by model argument name")
    p.add_argument("--seed", type=int, default=0, help="seed for drawn inputs and weights (default 0)")
    p.add_argument("-o", "--output", metavar="OUT.npz", help="write outputs to OUT.npz")
    _add_target(p)
    p.add_argument("--through", choices=[s.value for s in STAGE_ORDER], default=None,
                   help="lower the model to this stage first and execute that IR (default: run the"
                   " input at its own stage: graph for a .model file)")
    p.set_defaults(run=cmd_run)

    p = sub.add_parser("opt", help="run passes over printed IR (like mlir-opt)",
                       description="Parse FILE (any printed strata stage), run the pass pipeline"
                       " and print the result. Passes: strata's and xDSL's upstream ones.")
    p.add_argument("file", metavar="FILE", help="an .mlir file, or - for stdin")
    p.add_argument("-p", "--passes", metavar="PIPELINE", default="",
                   help="comma-separated passes with options, e.g. 'canonicalize,cse'")
    p.add_argument("-o", "--output", metavar="FILE", help="write the IR to FILE instead of stdout")
    p.add_argument("--no-debuginfo", action="store_true", help="omit loc(...) source locations")
    p.set_defaults(run=cmd_opt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    # IR is many small long-lived objects: collecting the young generation
    # less often makes large compiles about 20% faster and keeps them linear.
    gc.set_threshold(200_000, 50, 1000)
    try:
        return args.run(args)
    except StrataError as err:
        print(str(err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug in strata, not in the user's input
        if os.environ.get("STRATA_TRACEBACK"):
            traceback.print_exc()
        print(
            f"strata: internal error: {type(err).__name__}: {err}\n"
            "(this is a bug in strata; set STRATA_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
