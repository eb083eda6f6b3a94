"""
The `strata` command line: check, compile, run and opt.

Every user error ends as a message on stderr and exit status 1; an internal
error (a bug in strata) prints a one-line report and exits 3, with the
traceback only when `STRATA_TRACEBACK=1` is set.
"""

from __future__ import annotations

import argparse
import math
import errno
import gc
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from strata.compiler import ir
from strata.compiler.device_options import (
    add_device_options, chosen_devices, nonempty, opt_device, recorded_device,
)
from strata.compiler.diagnostics import StrataError, open_output
from strata.compiler.execution import loop_interpreter
from strata.compiler.driver import (
    STAGE_ORDER, DumpOptions, Stage, attach_device, compile_module, detect_stage, passes_between, run_passes,
)
from strata.compiler.frontend import load_model, read_source
from strata.compiler.testing.fuzz import cmd_fuzz
from strata.compiler.pipeline import parse_pipeline
from strata.compiler.schedule import MAX_DEVICES, MAX_THREADS, apply_schedule, parse_schedule
from strata.dialects.vocabulary import ALL_TARGETS, CHIPS_ATTR, TARGETS, mesh_sizes
from strata.dialects.device import DeviceSpec, SpecError
from strata.compiler.reports.stats import human, model_function, model_stats

WRITE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}
"""Failures writing the output (a full disk, /dev/full): the user's environment, not a bug."""

MAX_RUN_ELEMENTS = 2**31
"""`strata run` refuses a model whose inputs and weights exceed this many elements."""


# --------------------------------------------------------------------------- shared helpers


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number, got '{text}'") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed is between 0 and 2**63 - 1, got {value}")
    return value


def _threads(text: str) -> int:
    """`--threads N`: the native code's thread count, 1 to `MAX_THREADS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a thread count is a whole number, got '{text}'") from None
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"a thread count is between 1 and {MAX_THREADS}, got {value}")
    return value


def _time_limit(text: str) -> float:
    """`--time-limit SECONDS`: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a time limit is a number of seconds, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a time limit is a positive, finite number of seconds, got '{text}'")
    return value


def _plot_path(text: str) -> str:
    """`--plot FILE`: a .png, .svg or .pdf in a folder that exists, checked before any work."""
    path = Path(text)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise argparse.ArgumentTypeError(f"the plot is written as .png, .svg or .pdf, not '{path.name}'")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {path.parent} to write {path.name} into")
    return text


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


_IMPORTED: dict[tuple[str, tuple], object] = {}


def imported_onnx(path: str, defines: list[tuple[str, int]]):
    """An ONNX file translated to the model language (`compiler/onnx_import.py`), once per run of strata."""
    key = (path, tuple(defines))
    if key not in _IMPORTED:
        from strata.compiler.onnx_import import import_onnx

        _IMPORTED[key] = import_onnx(path, dict(defines))
    return _IMPORTED[key]


def load_input(path: str, defines: list[tuple[str, int]]) -> ModuleOp:
    """
    A `.model` file through the frontend, printed IR (`.mlir`) parsed back,
    or an ONNX file imported (its `-D` values bind the inputs' symbolic dims).
    """
    if path.endswith(".onnx"):
        from strata.compiler.frontend import compile_source

        return compile_source(imported_onnx(path, defines).text, f"{path} (imported)")
    if path.endswith(".mlir") or path == "-":
        if defines:
            raise StrataError("error: -D applies to .model files, not to IR input")
        text = _read_stdin() if path == "-" else read_source(path)
        return ir.parse_module(text, "<stdin>" if path == "-" else path)
    return load_model(path, dict(defines))


def _read_stdin() -> str:
    """IR from stdin, as much as a model file may hold (`strata opt - < /dev/zero` ends)."""
    from strata.compiler.frontend import MAX_SOURCE_BYTES

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream standing in for stdin (embedding, tests)
        text = sys.stdin.read(MAX_SOURCE_BYTES + 1)
        if len(text) > MAX_SOURCE_BYTES:
            raise StrataError(f"error: the input on stdin is larger than {MAX_SOURCE_BYTES:,} bytes; is it IR?")
        return text
    data = stream.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise StrataError(f"error: the input on stdin is larger than {MAX_SOURCE_BYTES:,} bytes; is it IR?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StrataError(f"error: the input on stdin is not UTF-8 text (byte {err.start}); is it IR?") from None


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    try:
        with open_output(output) as f:
            f.write(text)
    except OSError as err:
        raise StrataError(f"error: cannot write {output}: {err.strerror}") from None


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=TARGETS, default="gpu",
                        help="target machine: gpu (H100-class), tpu (systolic array), lpu, cpu (this host) (default: gpu)")


# --------------------------------------------------------------------------- commands


def cmd_check(args) -> int:
    module = load_input(args.model, args.defines)
    stage = detect_stage(module)
    if stage != Stage.GRAPH:
        ops = sum(1 for _ in module.walk()) - 1
        print(f"{args.model}: ok: {stage}-stage IR, {ops} ops, verified")
        return 0
    s = model_stats(module)
    print(
        f"{args.model}: ok: model '{s.name}', {s.ops} ops, {s.params} params"
        f" ({s.parameter_count:,} parameters), {human(s.flops, 'FLOP')}"
    )
    return 0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _dump_options(args) -> DumpOptions:
    return DumpOptions(
        after_all=args.print_ir_after_all,
        after=frozenset(args.print_ir_after),
        after_change=args.print_ir_after_change,
        dump_dir=Path(args.dump_dir) if args.dump_dir else None,
        timing=args.timing,
        debuginfo=not args.no_debuginfo,
        stderr=_stderr,
    )


def _compile_one(args, target: str, targets: list[str], emit: Stage, report_format: str) -> ModuleOp:
    """Load the model, tune it if asked, lower it for `target`'s device; print or write the IR if asked."""
    module, tuning = compile_for(args, target, targets, emit)
    if tuning is not None and report_format == "table":
        from strata.compiler.tuning.autotune import print_tune_report

        print_tune_report(tuning)
    _say_chips(module, target, args)
    if args.output or (args.emit is not None and args.output in (None, "-")):
        _write(ir.print_module(module, debuginfo=not args.no_debuginfo), args.output)
    return module


def compile_for(args, target: str, targets: list[str], emit: Stage, progress: bool = True):
    """
    What `strata compile` does for one target, printing nothing: the model
    (`args.model`, `args.defines`) on the chosen device, tuned when
    `args.autotune`, with `--schedule` and `--devices` applied, lowered to
    `emit`. Returns the module and the tuning report (None when not tuned).
    `strata sweep` evaluates its points with it.
    """
    module = load_input(args.model, args.defines)
    devices = chosen_devices(args, targets, recorded_device(module))
    tuning = None
    if args.autotune:
        module, tuning = _autotune(module, target, args, devices, progress)
    if args.pass_pipeline:
        passes = list(parse_pipeline(args.pass_pipeline).passes)
    else:
        passes = passes_between(target, detect_stage(module), emit)
    passes = apply_schedule(passes, parse_schedule(args.schedule + _devices_schedule(args, module)))
    unknown = sorted(set(args.print_ir_after) - {p.name for p in passes})
    if unknown:
        raise StrataError(f"error: --print-ir-after {', '.join(unknown)}: no such pass in the pipeline (its passes:"
                          f" {', '.join(dict.fromkeys(p.name for p in passes))})")
    compile_module(module, target, emit, _dump_options(args), passes, devices.get(target))
    return module, tuning


def _devices(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DEVICES:
        raise argparse.ArgumentTypeError(f"the number of devices is a whole number from 1 to {MAX_DEVICES:,},"
                                         f" got '{text}'")
    return value


def _devices_schedule(args, module: ModuleOp | None = None) -> list[str]:
    """
    `--devices N` is the whole count: `N / (tp x dp)` pipeline stages (the
    `chips` of place-chips) of a `tp x dp` mesh each (`--schedule tp=, dp=`,
    else the mesh `module` records, as a tuned one does).
    """
    devices = getattr(args, "devices", None)
    if not devices:
        return []
    pinned = _pinned_parallelism(args)
    recorded = mesh_sizes(module) if module is not None else {}
    mesh = pinned.get("tp", recorded.get("tp", 1)) * pinned.get("dp", recorded.get("dp", 1))
    if devices % mesh:
        raise StrataError(f"error: --devices {devices} is not a multiple of tp x dp = {mesh}")
    stages = devices // mesh
    if pinned.get("pp", stages) != stages:
        raise StrataError(f"error: --devices {devices} with a mesh of {mesh} makes {stages} pipeline stages,"
                          f" not --schedule pp={pinned['pp']}; give one of them")
    return [] if "pp" in pinned else [f"chips={stages}"]


def _pinned_parallelism(args) -> dict[str, int]:
    """The parallelism `--schedule` fixes: {"tp": .., "dp": .., "pp": .., "sp": 0 or 1}, those given."""
    pinned = {}
    for key, text in parse_schedule(getattr(args, "schedule", [])).items():
        axis = {"chips": "pp"}.get(key, key)
        if axis == "sp":  # sequence parallelism: on or off, not a device count
            if text.lower() not in ("0", "1", "true", "false"):
                raise StrataError(f"error: --schedule sp={text}: 1 (sequence parallelism) or 0")
            pinned["sp"] = int(text.lower() in ("1", "true"))
            continue
        if axis not in ("tp", "dp", "pp"):
            continue
        if not text.isdigit() or int(text) < 1:
            raise StrataError(f"error: --schedule {axis}={text}: a device count from 1")
        pinned[axis] = int(text)
    return pinned


def _say_chips(module: ModuleOp, target: str, args) -> None:
    """Without `--devices`, say when the model needed more than one device to hold its weights."""
    chips = module.attributes.get(CHIPS_ATTR)
    devices, stages = getattr(args, "devices", None), _pinned_parallelism(args).get("pp")
    if chips is not None and (devices or stages):
        # More devices than pipeline stages can use (one kernel at least each): say what was used.
        mesh = math.prod(mesh_sizes(module).values())
        asked, option = (devices, f"--devices {devices}") if devices else (stages * mesh, f"--schedule pp={stages}")
        if chips.value.data * mesh < asked:
            _stderr(f"note: {option}: the model uses {chips.value.data * mesh} devices ({chips.value.data} pipeline"
                    f" stages of {mesh}); a stage runs one kernel at least")
    pinned = devices is not None or stages is not None
    if not pinned and chips is not None and chips.value.data > 1:
        mesh = math.prod(mesh_sizes(module).values())
        stages = chips.value.data
        layout = f" ({stages} pipeline stages of {mesh})" if mesh > 1 else ""
        _stderr(f"note: compiled for {stages * mesh} {target} devices{layout}, the fewest that hold the weights"
                f" (pin another count with --devices N)")


def _add_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=_devices, metavar="N",
                        help="run the model on N devices: N / (tp x dp) pipeline stages of consecutive kernels,"
                        " each on a tp x dp mesh (--schedule tp=, dp=; default 1); without it, the fewest"
                        " stages whose memory holds the weights")


def _add_schedule(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedule", metavar="KEY=VALUE", action="append", default=[],
                        help="pin a pass choice instead of the default, e.g. --schedule tp=2 (tensor parallelism),"
                        " dp=2 (data parallelism), pp=4 (pipeline stages), dataflow=ws, tile=64,64,32 (the innermost"
                        " dims' tiles; 0 tiles a dim whole) (repeatable)")


def _print_reports(costed: dict, report_format: str) -> None:
    from strata.compiler.reports import report as reports

    if report_format == "json":
        sys.stdout.write(reports.to_json(costed))
    elif report_format == "table" and len(costed) == 1:
        reports.print_report(next(iter(costed.values())))
    elif report_format == "table" and costed:
        for report in costed.values():
            reports.print_report(report)
        reports.print_side_by_side(costed)


def cmd_compile(args) -> int:
    from strata.backends.cost import estimate
    from strata.compiler.reports import report as reports
    from strata.dialects.device import module_device

    targets = list(ALL_TARGETS) if args.target == "all" else [args.target]
    emit = Stage(args.emit) if args.emit else Stage.HARDWARE
    ir_to_stdout = args.emit is not None and args.output in (None, "-")
    report_format = args.report or ("none" if ir_to_stdout else "table")
    if ir_to_stdout and report_format != "none":
        raise StrataError("error: the report goes to stdout; write the IR to a file with -o FILE")
    if len(targets) > 1 and (args.output or args.dump_dir or ir_to_stdout or args.pass_pipeline):
        raise StrataError("error: --target all reports the three targets; -o, --emit, --dump-dir and"
                          " --pass-pipeline need one target")
    if getattr(args, "threads", None):
        if targets != ["cpu"]:
            raise StrataError("error: --threads is for --target cpu (the host's cores running each kernel)")
        args.schedule = [*args.schedule, f"threads={args.threads}"]
    wants_cost = report_format != "none" or args.plot
    if wants_cost and emit != Stage.HARDWARE and (args.report not in (None, "none") or args.plot):
        raise StrataError(f"error: a cost report needs the hardware stage, not --emit {emit}")
    pinned = parse_schedule(args.schedule)  # a malformed --schedule fails before any work
    if "0" in pinned.get("sizes", "").replace(" ", "").split(","):
        _stderr(f"note: --schedule tile={pinned['sizes']}: a tile size of 0 takes the whole dim")
    costed, bandwidth = {}, {}
    for target in targets:
        module = _compile_one(args, target, targets, emit, report_format)
        if wants_cost and emit == Stage.HARDWARE:
            _check_costable(module, args)
            device = module_device(module)
            costed[target] = estimate(module, device)
            warning = reports.check_memory(costed[target])
            if warning:
                _stderr(warning)
            bandwidth[target] = next(device[k] for k in ("hbm_bandwidth", "sram_bandwidth", "dram_bandwidth")
                                     if k in device)
    _print_reports(costed, report_format)
    if args.plot:
        reports.plot_roofline(costed, args.plot, bandwidth)
    return 0


def _check_costable(module: ModuleOp, args) -> None:
    """A cost report needs one function at the hardware stage (a --pass-pipeline may stop before it)."""
    from strata.dialects.loop import KernelOp as LoopKernel

    fn = model_function(module)  # a module of no function (an edited dump) is a clean error
    # What the cost model refuses: graph ops or loop kernels left (a model returning its input has none).
    if any(op.name.startswith("graph.") or isinstance(op, LoopKernel) for op in fn.body.block.ops):
        stage = detect_stage(module)
        how = "--pass-pipeline stopped" if args.pass_pipeline else "the module is"
        raise StrataError(f"error: {how} at the {stage} stage, and a cost report needs the hardware stage:"
                          f" give the passes up to lower-to-hardware, or --report none with -o FILE")


def _tune_options(args):
    from strata.backends.tuner.database import TuningDatabase, default_path
    from strata.compiler.tuning.autotune import Options

    if args.budget is not None and args.budget < 1:
        raise StrataError("error: --budget must be at least 1")
    if args.jobs < 1:
        raise StrataError("error: --jobs must be at least 1")
    db = TuningDatabase(_usable_database(Path(args.db) if args.db else default_path()))
    devices = getattr(args, "devices", None)
    pinned = _pinned_parallelism(args) if devices else {}
    threads = getattr(args, "threads", None) or 1
    if threads > 1 and args.target != "cpu":
        raise StrataError("error: --threads is for --target cpu (the host's cores running each kernel)")
    return Options(args.budget, args.strategy, args.seed, args.jobs, args.time_limit, db, devices, pinned, threads)


def _usable_database(path: Path) -> Path:
    """The tuning database's path, refused early unless it is (or can be) a regular file strata may append to."""
    if path.exists() and not path.is_file():
        raise StrataError(f"error: the tuning database {path} is not a regular file; give a file path with --db")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as err:
        raise StrataError(f"error: cannot write the tuning database {path}: {err.strerror}; give another with --db") from None
    return path


def _autotune(module, target: str, args, devices, progress: bool = True):
    """Tune a graph-stage module for `target` on its device (with a progress bar on stderr when `progress`)."""
    from contextlib import nullcontext

    from strata.compiler.tuning import autotune

    if detect_stage(module) != Stage.GRAPH:
        raise StrataError("error: autotuning starts from a model or graph-stage IR, not a later dump")
    device = attach_device(module, devices.get(target), target)
    bar, update = autotune.progress_bar() if progress else (nullcontext(), None)
    with bar:
        tuned, report = autotune.autotune(module, target, device, _tune_options(args), update)
    return tuned, report


def cmd_tune(args) -> int:
    from strata.compiler.tuning import autotune

    targets = list(ALL_TARGETS) if args.target == "all" else [args.target]
    if args.measure:
        return _tune_measured(args)
    reports = {}
    for target in targets:
        module = load_input(args.model, args.defines)
        devices = chosen_devices(args, targets, recorded_device(module))
        _, reports[target] = _autotune(module, target, args, devices)
    if args.report == "json":
        import json

        data = {t: r.as_json() for t, r in reports.items()}
        sys.stdout.write(json.dumps(data[targets[0]] if len(targets) == 1 else {"targets": data}, indent=2) + "\n")
    else:
        for report in reports.values():
            autotune.print_tune_report(report)
    return 0


MAX_REPEAT = 10_000
"""Most timed runs (or measured candidates) one command may ask for: more is a mistake, not a measurement."""

MAX_PROCESSES = 20
"""Most fresh processes `strata measure --processes` runs."""


def cmd_measure(args) -> int:
    from strata.compiler import measure
    from strata.compiler.execution import weights

    if args.target != "cpu":
        raise StrataError(f"error: measure times strata's native code on this CPU against the cpu cost model:"
                          f" give --target cpu, not --target {args.target}")
    if not 1 <= args.repeat <= MAX_REPEAT:
        raise StrataError(f"error: --repeat must be between 1 and {MAX_REPEAT}, not {args.repeat}")
    if not 1 <= args.processes <= MAX_PROCESSES:
        raise StrataError(f"error: --processes must be between 1 and {MAX_PROCESSES}, not {args.processes}")
    measure.check_toolchain()
    module = load_input(args.model, args.defines)
    if detect_stage(module) != Stage.GRAPH:
        raise StrataError("error: measure starts from a model or graph-stage IR, not a later dump")
    fn = model_function(module)
    _check_ranks(fn)
    total = sum(int(np.prod(s.shape)) for s in weights.model_signature(fn))
    if total > MAX_RUN_ELEMENTS:
        raise StrataError(f"error: the model's inputs and weights hold {total:,} elements, too many to execute"
                          f" here; shrink it with -D (e.g. -D S=16)")
    bound = weights.bind_values(fn, args.seed)
    attach_device(module, _measured_device(args, module), args.target)
    schedule = parse_schedule(args.schedule)
    spread = [key for key in ("tp", "dp", "sp", "chips") if key in schedule]
    if spread:
        raise StrataError(f"error: --schedule {', '.join({'chips': 'pp'}.get(k, k) for k in spread)}: measure runs"
                          f" the model on this one CPU; drop the device parallelism")
    if args.processes > 1:
        # Checked here first: a bad model fails once, with its own message, not in every child.
        result = measure.measure_apart(args.argv, args.processes)
    else:
        result = measure.measure(module, args.target, bound.inputs, bound.params, args.threads, args.repeat,
                                 schedule)
    if args.report == "json":
        import json

        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
    else:
        measure.print_measurement(result)
    return 0


def _measured_device(args, module) -> DeviceSpec:
    """
    The cpu device `measure` and `tune --measure` cost on: the one the options
    or a dump name, else this machine (`--device host`): the runs are timed here.
    """
    from strata.compiler import host

    base = recorded_device(module)
    if not base and not (args.device or args.device_file):
        base = {"cpu": host.host_device()}
    return chosen_devices(args, ["cpu"], base).get("cpu") or base["cpu"]


def _tune_measured(args) -> int:
    """`strata tune --target cpu --measure`: the cost model screens, native runs decide (`compiler/measure.py`)."""
    from strata.compiler import measure

    if args.target != "cpu":
        raise StrataError(f"error: tune --measure times candidates on this CPU: give --target cpu,"
                          f" not --target {args.target}")
    if not 1 <= args.repeat <= MAX_REPEAT or not 1 <= args.candidates <= MAX_REPEAT:
        raise StrataError(f"error: --repeat and --candidates must be between 1 and {MAX_REPEAT}")
    if args.devices:
        raise StrataError("error: tune --measure runs on this one CPU: drop --devices")
    measure.check_toolchain()
    module = load_input(args.model, args.defines)
    if detect_stage(module) != Stage.GRAPH:
        raise StrataError("error: autotuning starts from a model or graph-stage IR, not a later dump")
    device = attach_device(module, _measured_device(args, module), args.target)
    _, report = measure.tune_measured(module, args.target, device, _tune_options(args), args.repeat,
                                      args.candidates, args.seed)
    if args.report == "json":
        import json

        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        measure.print_measured_tune_report(report)
    return 0


def cmd_sweep(args) -> int:
    from strata.compiler import sweep

    if args.jobs < 1:
        raise StrataError("error: --jobs must be at least 1")
    if args.budget is not None and args.budget < 1:
        raise StrataError("error: --budget must be at least 1")
    if args.executor == "ray" and args.jobs != 1:
        _stderr("note: --jobs applies to the local executor; Ray runs as many points at once as it has CPUs")
    if args.ray_address and args.executor != "ray":
        raise StrataError("error: --ray-address needs --executor ray")
    if args.plot and not args.plot.lower().endswith((".png", ".pdf", ".svg")):
        raise StrataError(f"error: --plot {args.plot}: give a .png, .pdf or .svg file")
    study = sweep.Sweep(
        models=tuple(args.models), target=args.target,
        axes=sweep.parse_axes(args.vary, args.defines, args.schedule, args.devices),
        device=args.device, device_file=args.device_file, spec=tuple(args.spec),
        autotune=args.autotune, db=args.db, budget=args.budget,
    )
    for model in study.models:
        if not Path(model).is_file():
            raise StrataError(f"error: {model}: no such model file")
    bar, update = sweep.progress_bar()
    with bar:
        result = sweep.run_sweep(study, Path(args.output), min(args.jobs, os.cpu_count() or 1), args.executor,
                                 args.ray_address, update)
    if args.report == "json":
        sys.stdout.write(sweep.to_json(result))
    elif args.report == "table":
        sweep.print_table(result, study)
    sweep.check_some_succeeded(result)
    if args.plot:
        sweep.plot(result, study, args.plot, args.plot_x, args.plot_y, args.pareto)
    return 0


def cmd_import(args) -> int:
    from strata.compiler.onnx_import import write_import

    if not args.model.endswith(".onnx"):
        raise StrataError(f"error: {args.model}: strata import reads .onnx files")
    model_path, weights_path = write_import(imported_onnx(args.model, args.defines), args.output)
    _stderr(f"wrote {model_path} and {weights_path}")
    return 0


def cmd_export(args) -> int:
    from strata.compiler.execution import weights
    from strata.compiler.onnx_export import export

    module = load_input(args.model, args.defines)
    if detect_stage(module) != Stage.GRAPH:
        raise StrataError("error: export takes a model or graph-stage IR, not a later dump")
    fn = model_function(module)
    params_spec = [s for s in weights.model_signature(fn) if s.kind == "param"]
    given = weights.load_npz(args.weights, params_spec, allow_missing=True) if args.weights else {}
    bound = weights.bind_values(fn, args.seed, {}, given)
    export(module, bound.params, args.output)
    drawn = [name for name in bound.drawn if name in bound.params]
    if drawn:
        _stderr(f"({len(drawn)} of {len(params_spec)} weights drawn at random, seed {args.seed})")
    return 0


def cmd_targets(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from strata.dialects import device as specs

    table = Table(title="devices (--device NAME; each target's default marked *)", title_justify="left")
    for column in ("device", "target", "clock", "peak bf16/fp16", "memory", "bandwidth", "tile memory",
                   "compute units"):
        table.add_column(column)
    for name in specs.DEVICES:
        d = specs.load_device(name)
        peak = d.get("peak_flops_bf16") or d.get("peak_flops_fp16") or 0
        peak = peak or d.get("peak_flops_fp32", 0)
        units = (f"{d['sms']} SMs" if "sms" in d else
                 f"{d['num_arrays']} x {d['array_rows']}x{d['array_cols']} arrays" if "num_arrays" in d else
                 f"{d['cores']} cores x {d['fma_pipes']} FMA x {d['simd_lanes_f32']} lanes" if "cores" in d else
                 f"{d.get('mxm_planes', 1)} x {d['mxm_rows']}x{d['mxm_cols']} MXM, {d.get('vector_alus', '?')} ALUs")
        memory = d.get("hbm_bytes") or d.get("sram_bytes") or d.get("dram_bytes") or 0
        bandwidth = d.get("hbm_bandwidth") or d.get("sram_bandwidth") or d.get("dram_bandwidth") or 0
        default = "*" if specs.DEFAULT_DEVICE.get(d.target) == name else ""
        table.add_row(
            name + default, d.target, human(d["clock_hz"], "Hz"), human(peak, "FLOP/s"), human(memory, "B"),
            human(bandwidth, "B/s"), human(d.tile_memory_bytes, "B"), units,
        )
    console = Console(width=160)
    console.print(table)
    console.print("host (cpu): this machine's CPU, measured on it on first use and cached (`--device host`;"
                  " `strata measure` costs on it)")
    return 0


def cmd_opt(args) -> int:
    module = load_input(args.file, [])
    device = opt_device(args, module)
    if device is not None:
        attach_device(module, device, device.target)
    if args.passes:
        passes = list(parse_pipeline(args.passes).passes)
        run_passes(ir.make_context(), module, passes, DumpOptions(debuginfo=not args.no_debuginfo))
    _write(ir.print_module(module, debuginfo=not args.no_debuginfo), args.output)
    return 0


NUMPY_MAX_RANK = 64
"""NumPy's most dimensions of an array: `strata run` executes on NumPy arrays."""


def _check_ranks(fn) -> None:
    """Refuse, before drawing any value, a tensor NumPy cannot hold (rank over 64), at its op or argument."""
    from xdsl.dialects.builtin import ShapedType

    def too_deep(value) -> bool:
        return isinstance(value.type, ShapedType) and len(value.type.get_shape()) > NUMPY_MAX_RANK

    for arg in fn.body.block.args:
        if too_deep(arg):
            raise StrataError(f"error: argument %{arg.name_hint or arg.index} of @{fn.sym_name.data} has rank"
                              f" {len(arg.type.get_shape())}; `strata run` executes on NumPy, which holds at most"
                              f" {NUMPY_MAX_RANK} dims")
    for op in fn.walk():
        for result in op.results:
            if too_deep(result):
                raise ir.op_error(op, f"makes a tensor of rank {len(result.type.get_shape())}; `strata run` executes"
                                      f" on NumPy, which holds at most {NUMPY_MAX_RANK} dims")


def cmd_run(args) -> int:
    from strata.compiler.execution import reference, weights

    module = load_input(args.model, args.defines)
    fn = model_function(module)
    _check_ranks(fn)
    specs = weights.model_signature(fn)
    total = sum(int(np.prod(s.shape)) for s in specs)
    if total > MAX_RUN_ELEMENTS:
        raise StrataError(
            f"error: the model's inputs and weights hold {total:,} elements, too many to execute"
            f" here; shrink it with -D (e.g. -D S=16)"
        )
    inputs_spec = [s for s in specs if s.kind == "input"]
    params_spec = [s for s in specs if s.kind == "param"]
    given_inputs = weights.load_npz(args.inputs, inputs_spec, allow_missing=True) if args.inputs else {}
    given_weights = weights.load_npz(args.weights, params_spec, allow_missing=True) if args.weights else {}
    if args.model.endswith(".onnx"):
        # The initializers are the weights; --weights overrides them one by one.
        given_weights = {**imported_onnx(args.model, args.defines).weights, **given_weights}
    bound = weights.bind_values(fn, args.seed, given_inputs, given_weights)
    inputs, params = bound.inputs, bound.params
    devices = chosen_devices(args, [args.target], recorded_device(module))
    if args.through is not None or args.backend == "mlir" or devices:
        attach_device(module, devices.get(args.target), args.target)
    _devices_schedule(args)  # a --devices the mesh does not divide fails before any work
    if args.schedule and args.through is None:
        raise StrataError("error: --schedule pins passes: give --through STAGE to run them (e.g. --through hardware)")
    if args.through is not None:
        passes = passes_between(args.target, detect_stage(module), Stage(args.through))
        # Pipeline stages are placed at the hardware stage; before it, --devices only checks the mesh divides it.
        stages = _devices_schedule(args) if Stage(args.through) == Stage.HARDWARE else []
        compile_module(module, args.target, Stage(args.through),
                       pipeline=apply_schedule(passes, parse_schedule(args.schedule + stages)))
    reference.check_run_size(module)
    if args.backend == "mlir" or detect_stage(module) == Stage.MLIR:
        from strata.compiler.execution import native

        outputs = native.run_module(module, args.target, inputs, params, threads=args.threads)
    else:
        runner = loop_interpreter if detect_stage(module) in (Stage.LOOP, Stage.HARDWARE) else reference
        outputs = runner.run_module(module, inputs, params)
    if args.output:
        weights.save_outputs(args.output, outputs)
    print(weights.summarize(outputs))
    if bound.drawn:
        print(
            f"({len(bound.drawn)} of {bound.total} inputs and weights drawn at random, seed {args.seed})",
            file=sys.stderr,
        )
    return 0


# --------------------------------------------------------------------------- argument parsing


def _add_tune_options(parser: argparse.ArgumentParser) -> None:
    from strata.backends.tuner.strategies import DEFAULT_STRATEGY, STRATEGIES

    parser.add_argument("--budget", type=int, metavar="N",
                        help="evaluations per kernel (default: 10%% of its space, at least 16)")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default=DEFAULT_STRATEGY,
                        help=f"search strategy (default: {DEFAULT_STRATEGY})")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the search (default 0): same seed, same result")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="evaluate N points in parallel")
    parser.add_argument("--db", metavar="FILE",
                        help="tuning database (default: $STRATA_TUNING_DB or ~/.cache/strata/tuning.jsonl)")
    parser.add_argument("--time-limit", type=_time_limit, metavar="SECONDS", help="stop each kernel's search after this long")


def _check_parser(sub) -> None:
    p = sub.add_parser("check", help="parse, type-check and verify a model; print a summary",
                       description="Parse, type-check and verify MODEL, then print one line:"
                       " ops, params, parameter count and FLOPs.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed graph IR, .mlir)")
    _add_defines(p)
    p.set_defaults(run=cmd_check)


def _compile_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile a model and print its IR",
                       description="Compile MODEL and print the IR of the stage chosen with --emit.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed IR, .mlir)")
    _add_defines(p)
    p.add_argument("--target", choices=[*TARGETS, "all"], default="gpu",
                   help="gpu (H100-class), tpu (systolic array), lpu, cpu (this host), or all: gpu, tpu and lpu"
                   " side by side (default: gpu)")
    p.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="with --target cpu: lower and price each kernel for N threads (default 1, as"
                   " run --backend mlir; same as --schedule threads=N)")
    p.add_argument("--emit", choices=[s.value for s in STAGE_ORDER], default=None,
                   help="stop at this stage and print its IR to stdout (default: compile to hardware and"
                   " print the cost report)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the IR to FILE")
    p.add_argument("--report", choices=["table", "json", "none"], default=None,
                   help="cost report on stdout: a table per kernel with totals (default when the IR is not"
                   " printed), or JSON (schema in the README)")
    add_device_options(p)
    _add_devices(p)
    _add_schedule(p)
    p.add_argument("--plot", metavar="FILE.png", type=_plot_path, help="draw a roofline of the kernels to FILE.png")
    p.add_argument("--autotune", action="store_true",
                   help="tune fusion, layout, tiles, loop order, dataflow and chips first (see `strata tune`)")
    _add_tune_options(p)
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


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="execute a model with the NumPy reference",
                       description="Execute MODEL with the NumPy reference. Weights and inputs"
                       " missing from the .npz files are drawn from a seeded generator (integer"
                       " inputs used as gather ids stay in range of their table). Outputs are"
                       " written as out0, out1, ... and summarised on stdout.")
    p.add_argument("model", metavar="MODEL", help="a .model file or a printed graph module (.mlir)")
    _add_defines(p)
    p.add_argument("--weights", metavar="W.npz", help="weights keyed by param path (attn.0.w_qkv)")
    p.add_argument("--inputs", metavar="X.npz", help="inputs keyed by model argument name")
    p.add_argument("--seed", type=_seed, default=0, help="seed for drawn inputs and weights (default 0)")
    p.add_argument("-o", "--output", metavar="OUT.npz", help="write outputs to OUT.npz")
    _add_target(p)
    p.add_argument("--through", choices=[s.value for s in STAGE_ORDER], default=None,
                   help="lower the model to this stage first and execute that IR (default: run the"
                   " input at its own stage: graph for a .model file)")
    add_device_options(p)
    _add_devices(p)
    _add_schedule(p)
    p.add_argument("--backend", choices=["interpreter", "mlir"], default="interpreter",
                   help="execute with the NumPy reference / loop interpreter (default), or lower the loop stage"
                   " for --target through upstream MLIR (export-mlir, mlir-opt-22, LLVM) and run it natively")
    p.add_argument("--threads", type=_threads, default=1, metavar="N",
                   help="with --backend mlir: run the parallel loops on N threads (OpenMP; default 1)")
    p.set_defaults(run=cmd_run)


def _tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="search the cheapest schedule of a model and store it",
                       description="Autotune MODEL for a target: the fusion and layout switches, then per"
                       " unique kernel the tile sizes, loop order and (tpu) dataflow, and (lpu) the chip"
                       " count. Every evaluation goes to the tuning database, so a second run reuses it."
                       " Prints, per kernel, the default and tuned cost, the speedup and the schedule.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed graph IR, .mlir)")
    _add_defines(p)
    p.add_argument("--target", choices=[*TARGETS, "all"], default="gpu", help="target to tune for (default: gpu)")
    add_device_options(p)
    p.add_argument("--devices", type=_devices, metavar="N",
                   help="tune for N devices: search every split into tensor, data and pipeline parallelism first")
    p.add_argument("--report", choices=["table", "json"], default="table",
                   help="table, or JSON with per kernel space_size, evaluations and cache_hits")
    _add_tune_options(p)
    p.add_argument("--measure", action="store_true",
                   help="with --target cpu: time the cost model's best candidates natively and keep the fastest"
                   " measured, never slower than the default")
    p.add_argument("--candidates", type=int, default=4, metavar="K",
                   help="with --measure: per kernel, time the K points the cost model estimates cheapest (default 4)")
    p.add_argument("--repeat", type=int, default=5, metavar="R",
                   help="with --measure: timed runs per candidate, the mean of their middle half kept (default 5)")
    p.add_argument("--threads", type=_threads, default=1, metavar="N",
                   help="with --target cpu: price every kernel for N threads (default 1), and with --measure"
                   " run the native code on them")
    p.set_defaults(run=cmd_tune)


def _measure_parser(sub) -> None:
    p = sub.add_parser("measure", help="time the native code per kernel beside the cost model's estimates",
                       description="Compile MODEL for --target cpu, run its native code (as `strata run --backend"
                       " mlir`) with a timer around every kernel, and print per kernel and in total the measured"
                       " time (the mean of the middle half of the runs, less the clock's own cost), the cost"
                       " model's estimate and estimate / measured. Inputs and weights are drawn as `strata run`"
                       " draws them.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed graph IR, .mlir)")
    _add_defines(p)
    p.add_argument("--target", choices=TARGETS, default="cpu", help="the cost model to compare with: cpu (default)")
    add_device_options(p)
    _add_schedule(p)
    p.add_argument("--threads", type=_threads, default=1, metavar="N",
                   help="run the parallel loops on N threads (OpenMP; default 1)")
    p.add_argument("--repeat", type=int, default=10, metavar="R",
                   help="timed runs after one warm-up; the mean of their middle half is reported (default 10)")
    p.add_argument("--processes", type=int, default=1, metavar="P",
                   help="measure in P fresh processes and report the fastest one's figure per kernel and in"
                   " total: steadier on a shared machine, where a process's speed is set when it starts"
                   " (default 1)")
    p.add_argument("--seed", type=_seed, default=0, help="seed for the drawn inputs and weights (default 0)")
    p.add_argument("--report", choices=["table", "json"], default="table",
                   help="a table per kernel with totals (default), or JSON: kernels[] of the cost report with"
                   " measured_time_s, ratio and resolved (measured above the clock's own cost, resolution_s),"
                   " total.time_s and total.measured_time_s")
    p.set_defaults(run=cmd_measure)


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="evaluate the cross product of spec values, sizes, schedules and device counts",
                       description="A design-space sweep: one `strata compile ... --report json` per point of the"
                       " cross product of every value given, rows written to a CSV as they finish. A rerun on"
                       " the same output evaluates only the points it lacks; a point that fails is a row with"
                       " its error.")
    p.add_argument("models", metavar="MODEL", nargs="+", help=".model files (or printed graph IR)")
    p.add_argument("--target", choices=TARGETS, default="gpu", help="target machine (default: gpu)")
    p.add_argument("--device", metavar="NAME", type=nonempty,
                   help="the device (default: the target's; see `strata targets`)")
    p.add_argument("--device-file", metavar="FILE", type=nonempty,
                   help="a device spec file (TOML) instead of a named device")
    p.add_argument("--spec", metavar="KEY=VALUE", action="append", default=[],
                   help="override one figure of the device at every point (repeatable)")
    p.add_argument("--vary", metavar="KEY=V1,V2,...", action="append", default=[],
                   help="vary a device-spec key, e.g. --vary array_rows=32,64,128 (repeatable)")
    p.add_argument("-D", dest="defines", metavar="NAME=V1,V2,...", action="append", default=[],
                   help="vary a `let` constant of the model, e.g. -D B=1,8,64 (repeatable)")
    p.add_argument("--schedule", metavar="KEY=V1,V2,...", action="append", default=[],
                   help="vary a pass choice, e.g. --schedule tp=1,2,4 (tuple options: tile=64,64,32;128,128,64)")
    p.add_argument("--devices", metavar="N1,N2,...", help="vary the device count")
    p.add_argument("--autotune", action="store_true", help="tune every point before costing it")
    p.add_argument("--budget", type=int, metavar="N", help="with --autotune: evaluations per kernel")
    p.add_argument("--db", metavar="FILE", help="with --autotune: the tuning database")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="evaluate N points at once on the local executor (default 1; at most the cores)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local process pool, or Ray tasks (pip install 'strata[distributed]')")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("-o", "--output", metavar="RESULTS.csv", required=True,
                   help="the results, one row per point (kept and extended by a rerun)")
    p.add_argument("--report", choices=["table", "json", "none"], default="table",
                   help="print a table (default), or JSON {points, evaluated, cached}")
    p.add_argument("--plot", metavar="FILE.png", type=_plot_path,
                   help="plot --plot-y against --plot-x, or a Pareto front (--pareto)")
    p.add_argument("--plot-x", metavar="KEY", help="the varied key on the x axis (default: the first)")
    p.add_argument("--plot-y", metavar="METRIC", default="time_s", help="the metric on the y axis (default: time_s)")
    p.add_argument("--pareto", metavar="COLUMN",
                   help="plot throughput against this cost column (e.g. devices, energy_j) with its Pareto front")
    p.set_defaults(run=cmd_sweep)


def _import_parser(sub) -> None:
    p = sub.add_parser("import", help="translate an ONNX model into a .model file and its weights",
                       description="Write MODEL.onnx as a readable .model file in the model language and"
                       " NAME.weights.npz beside it (the initializers, keyed by the param names the file"
                       " uses). Symbolic input dims are bound with -D NAME=VALUE by their dim_param name.")
    p.add_argument("model", metavar="MODEL.onnx", help="an ONNX model (opset 13 or later)")
    _add_defines(p)
    p.add_argument("-o", "--output", metavar="NAME.model", required=True,
                   help="the .model file to write (or an existing directory)")
    p.set_defaults(run=cmd_import)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a model as ONNX (opset 17) with its weights as initializers",
                       description="Write MODEL's graph as an ONNX model that passes onnx.checker: inputs in the"
                       " model's order, outputs out0, out1, ..., the params as initializers from --weights,"
                       " else drawn exactly as `strata run --seed N` draws them.")
    p.add_argument("model", metavar="MODEL", help="a .model file (or printed graph IR)")
    _add_defines(p)
    p.add_argument("-o", "--output", metavar="OUT.onnx", required=True, help="the ONNX file to write")
    p.add_argument("--weights", metavar="W.npz", help="weights keyed by param path (default: drawn with --seed)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the drawn weights (default 0), as in `strata run`")
    p.set_defaults(run=cmd_export)


def _targets_parser(sub) -> None:
    p = sub.add_parser("targets", help="list the devices the cost models know",
                       description="List every shipped device spec with its key figures.")
    p.set_defaults(run=cmd_targets)


def _opt_parser(sub) -> None:
    p = sub.add_parser("opt", help="run passes over printed IR (like mlir-opt)",
                       description="Parse FILE (any printed strata stage), run the pass pipeline"
                       " and print the result. Passes: strata's and xDSL's upstream ones.")
    p.add_argument("file", metavar="FILE", help="an .mlir file, or - for stdin")
    p.add_argument("-p", "--passes", metavar="PIPELINE", default="",
                   help="comma-separated passes with options, e.g. 'canonicalize,cse'")
    p.add_argument("-o", "--output", metavar="FILE", help="write the IR to FILE instead of stdout")
    p.add_argument("--no-debuginfo", action="store_true", help="omit loc(...) source locations")
    add_device_options(p)
    p.set_defaults(run=cmd_opt)


def _fuzz_parser(sub) -> None:
    p = sub.add_parser("fuzz", help="check the passes' properties on random models (property-based testing)",
                       description="Draw random valid models (every operation of the language, blocks, repeat,"
                       " every dtype) and check after each pass of the pipeline that the IR verifies, prints"
                       " and parses back identically, and computes what it computed before (reference or loop"
                       " interpreter, within a float tolerance per dtype); that fuse, assign-layout and tile are"
                       " idempotent; and that the target's cost model gives positive kernel times, never beats"
                       " the device's compute or bandwidth bound, and never decreases when a dimension grows."
                       " On a failure the model is shrunk, the failing property and the shrunk model are"
                       " printed, the model is written to a .model file, and the exit status is 1; otherwise"
                       " 'N examples checked' is printed.")
    _add_target(p)
    add_device_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pass", dest="pass_name", metavar="NAME",
                       help="check only this pass (with options, e.g. 'tile{sizes=2,2,2}'); the default passes"
                       " before it bring each model to its stage (default: the target's whole default pipeline)")
    which.add_argument("--pass-pipeline", metavar="PIPELINE",
                       help="check these passes instead of the default pipeline, e.g."
                       " 'fuse{epilogue=false},assign-layout,tile{sizes=4,4,4},lower-to-loops'")
    p.add_argument("--examples", type=int, metavar="N",
                   help="models to check (default: 100 with --profile ci, 1000 with thorough)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random models and their values (default 0)")
    p.add_argument("--profile", choices=["ci", "thorough"], default="ci",
                   help="ci: models of up to 8 statements, 100 examples; thorough: up to 12, 1000 (default: ci)")
    p.add_argument("-o", "--output", metavar="FILE", default="strata-fuzz-failure.model",
                   help="where to write the shrunk failing model (default: strata-fuzz-failure.model)")
    p.add_argument("--replay", metavar="MODEL",
                   help="check the properties on this .model file instead of random ones")
    p.set_defaults(run=cmd_fuzz)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata",
        description="strata: an ML compiler. Compile .model files to graph, loop and hardware IR,"
        " execute them, and estimate their cost.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_check_parser, _compile_parser, _run_parser, _measure_parser, _tune_parser, _sweep_parser,
                _import_parser, _export_parser, _targets_parser, _opt_parser, _fuzz_parser):
        add(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings read `warning: ...`, not as Python's source-and-class lines."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `measure --processes` runs again
    warnings.formatwarning = _format_warning
    # Long chains of ops are walked recursively (a use-def chain of 10,000
    # elementwise ops compiles); the frontend bounds nesting in the source.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
    # IR is many small long-lived objects: collecting the young generation
    # less often makes large compiles about 20% faster and keeps them linear.
    gc.set_threshold(200_000, 50, 1000)
    try:
        code = args.run(args)
        sys.stdout.flush()
        return code
    except StrataError as err:
        print(str(err), file=sys.stderr)
        return 1
    except SpecError as err:  # a device description that lacks what a model needs: the user's to give
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # before OSError, its base: `strata ... | head` is no error
        return 0
    except OSError as err:
        if err.errno in WRITE_ERRORS:
            print(f"error: cannot write the output: {err.strerror}", file=sys.stderr)
            return 1
        return _internal_error(err)  # any other: a path strata failed to check, a bug
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug in strata, not in the user's input
        return _internal_error(err)


def _internal_error(err: BaseException) -> int:
    """Report a bug in strata in one line (the traceback with STRATA_TRACEBACK=1); exit status 3."""
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
