"""
`strata fuzz`: property-based testing of passes on random models.

    strata fuzz [--target T] [--pass NAME | --pass-pipeline P] [--examples N] [--seed N]
                [--profile ci|thorough] [-o FILE] [--replay MODEL]

draws models with `compiler.testing.random_models.models()` and checks every property
of `compiler.testing.properties` on each: after every pass of the pipeline (the
target's default pipeline, one pass of it, or a pipeline string) the IR
verifies, round-trips through text and computes what it computed before;
`fuse`, `assign-layout` and `tile` are idempotent; at the hardware stage the
target's cost model gives positive times that respect the device's compute
and bandwidth bounds, and (on `growable_models()`) never decrease when a
dimension grows; with the default pipeline, the real autotuner's schedule
never costs more than the default one. On a failure hypothesis shrinks the model; the failing
property, its message and the shrunk model are printed, the model is
written as a `.model` file that `strata compile` accepts, and the exit
status is 1. Otherwise the count of examples checked is printed and the
exit status is 0. Runs are reproducible: the same `--seed` draws the same
models.

Profiles: `ci` (100 examples by default, models of up to 8 statements) and
`thorough` (1000 examples, up to 12 statements). The same names are
hypothesis settings profiles for the test suite (`register_profiles`):
`ci` runs 25 examples per test and does not shrink a failing model (the test
fails in bounded time and prints the model as drawn; `strata fuzz` shrinks),
`thorough` runs 500 and shrinks (`STRATA_HYPOTHESIS_PROFILE=thorough` or
`pytest --hypothesis-profile thorough`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from strata.compiler.diagnostics import StrataError, open_output


@dataclass(frozen=True)
class Profile:
    examples: int
    """Default `--examples` of `strata fuzz`."""
    test_examples: int
    """Examples per property test in the test suite."""
    max_ops: int
    """Statements of a drawn model body, at most."""
    shrink: bool
    """Whether a failing property test shrinks its model (`strata fuzz` always does)."""


PROFILES = {"ci": Profile(100, 25, 8, False), "thorough": Profile(1000, 500, 12, True)}
PROFILE_ENV = "STRATA_HYPOTHESIS_PROFILE"


def register_profiles() -> None:
    """Register the `ci` and `thorough` hypothesis settings profiles."""
    from hypothesis import settings

    for name, profile in PROFILES.items():
        settings.register_profile(name, **hypothesis_settings(profile.test_examples, shrink=profile.shrink))


def active_profile() -> str:
    """The profile the tests run: `$STRATA_HYPOTHESIS_PROFILE`, else the one hypothesis loaded, else `ci`."""
    name = os.environ.get(PROFILE_ENV)
    if name:
        if name not in PROFILES:
            raise ValueError(f"{PROFILE_ENV}={name}: not one of {', '.join(PROFILES)}")
        return name
    from hypothesis import settings

    loaded = getattr(settings, "_current_profile", None)
    return loaded if loaded in PROFILES else "ci"


def hypothesis_settings(examples: int, derandomize: bool = True, shrink: bool = True) -> dict:
    """Keyword arguments of `hypothesis.settings` for property runs: no deadline, no database."""
    from hypothesis import HealthCheck, Phase

    return dict(
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else []),
        deadline=None,
        derandomize=derandomize,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What a fuzzing run found."""

    examples: int
    """Examples checked before the first failure (all of them when none failed)."""
    seconds: float
    failure: object | None = None
    """The (shrunk) `PropertyFailure`."""
    model: object | None = None
    """The shrunk `Model` it failed on."""
    growth: tuple[str, int] | None = None
    """For `cost-monotonic`: the `let` grown and its new value."""
    grown: int = 0
    """Growable models whose cost was compared with a grown copy (others could not keep their tiles)."""


def fuzz(pipeline, examples: int = 100, seed: int = 0, max_ops: int = 8, grow: bool = True,
         progress: Callable[[str], None] | None = None) -> Outcome:
    """Check `pipeline` (`compiler.testing.properties.Pipeline`) on `examples` drawn models."""
    from hypothesis import Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    from strata.compiler.testing.properties import (
        PropertyFailure, _describe, check_cost_monotonic, check_model, check_tuned_not_worse,
    )
    from strata.compiler.testing.random_models import growable_models, models

    state = {"count": 0, "failure": None, "model": None, "growth": None, "found": None, "grown": 0}
    start = time.perf_counter()
    step = max(1, examples // 10)
    # The cost properties need the hardware stage: draw growable models only for pipelines that reach it.
    grow = grow and any(p.name == "lower-to-hardware" for p in pipeline.passes)
    growth = st.tuples(growable_models(), st.integers(0, 6), st.integers(1, 3)) if grow else st.none()

    @settings(**hypothesis_settings(examples, derandomize=False), report_multiple_bugs=False,
              verbosity=Verbosity.quiet)
    @hypothesis_seed(seed)
    @given(model=models(max_ops=max_ops), grown=growth)
    def run(model, grown):
        if state["found"] is None:
            state["count"] += 1
            if progress and state["count"] % step == 0:
                progress(f"fuzz: {state['count']}/{examples} examples ({time.perf_counter() - start:.1f} s)")
        current, growing = model, None
        try:
            checked = check_model(model, pipeline)
            if grown is not None and checked.costed:
                current, (index, factor) = grown[0], grown[1:]
                name, value = current.lets[index % len(current.lets)]
                growing = (name, value * (factor + 1))
                if check_cost_monotonic(current, *growing, pipeline.target, pipeline.prefix + pipeline.passes,
                                        device=pipeline.device):
                    state["grown"] += 1
                # The tuner's property is the drawn model's: a failure reports that model, not the grown one.
                current, growing = model, None
                check_tuned_not_worse(model, pipeline.target, spec=pipeline.device)
        except Exception as err:  # noqa: BLE001 - anything else is a finding too
            failure = err if isinstance(err, PropertyFailure) else PropertyFailure("crash", _describe(err))
            if state["found"] is None:
                state["found"] = state["count"]
                if progress:
                    progress(f"fuzz: property '{failure.name}' failed on example {state['count']}; shrinking...")
            state.update(failure=failure, model=failure.model or current,
                         growth=growing if failure.model is not None else None)
            # One exception class per property, so hypothesis shrinks toward the same property.
            raise _per_property(failure) from None

    try:
        run()
    except PropertyFailure:
        pass
    checked = state["found"] - 1 if state["found"] is not None else state["count"]
    return Outcome(checked, time.perf_counter() - start, state["failure"], state["model"], state["growth"],
                   state["grown"])


_CLASSES: dict[str, type] = {}


def _per_property(failure):
    """`failure` as an instance of a `PropertyFailure` subclass named after its property."""
    cls = _CLASSES.get(failure.name)
    if cls is None:
        name = "PropertyFailure_" + failure.name.replace("-", "_")
        cls = _CLASSES[failure.name] = type(name, (type(failure),), {})
    return cls(failure.name, failure.message, failure.model)


# --------------------------------------------------------------------------- the command


def _replay(model_path: str, pipeline, seed: int) -> int:
    """`strata fuzz --replay FILE`: the properties on one model of the user's."""
    from strata.compiler.frontend import read_source
    from strata.compiler.testing.properties import PropertyFailure, check_model, check_tuned_not_worse
    from strata.compiler.testing.random_models import Model

    model = Model(read_source(model_path), filename=model_path)
    try:
        if check_model(model, pipeline, seed=seed).costed:
            check_tuned_not_worse(model, pipeline.target, spec=pipeline.device)
    except PropertyFailure as failure:
        print(f"strata fuzz: property '{failure.name}' fails on {model_path} ({pipeline.describe()}):")
        print(_indent(failure.message))
        return 1
    print(f"strata fuzz: {model_path}: every property holds ({pipeline.describe()})")
    return 0


def _report_failure(args, spec: str | None, pipeline, outcome) -> int:
    """Print the failing property and the shrunk model, write it to `-o`, and say how to replay it."""
    failure, model = outcome.failure, outcome.model
    text = model.text
    replay = f"strata fuzz --replay {args.output} --target {args.target}"
    if spec:
        replay += f" {'--pass' if args.pass_name else '--pass-pipeline'} '{spec}'"
    if outcome.growth is not None:
        name, value = outcome.growth
        text += f"# cost-monotonic: compare with -D {name}={value}\n"
        replay = (f"strata compile {args.output} --target {args.target}  vs  "
                  f"strata compile {args.output} --target {args.target} -D {name}={value}")
    try:
        with open_output(args.output) as f:  # a FIFO nothing reads is refused, not waited on
            f.write(text)
        written = f"written to {args.output}"
    except OSError as err:
        written = f"could not write {args.output}: {err.strerror}"
    print(f"strata fuzz: property '{failure.name}' failed ({pipeline.describe()}, seed {args.seed})"
          f" after {outcome.examples} passing examples; shrunk model {written}")
    print(_indent(failure.message))
    print(f"--- {args.output} (replay: {replay})")
    print(text, end="")
    return 1


MAX_EXAMPLES = 1_000_000
"""The most `--examples` one run takes (about a day at the usual 0.1 s each): past it, split the run by --seed."""


def cmd_fuzz(args) -> int:
    """`strata fuzz` (see the module docstring)."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise StrataError("error: strata fuzz needs hypothesis: pip install 'strata[test]'") from None
    from strata.compiler.device_options import chosen_devices
    from strata.compiler.testing.properties import Pipeline, autotuner, register_tuner

    spec = args.pass_name or args.pass_pipeline
    pipeline = Pipeline.parse(spec, args.target) if spec else Pipeline.default(args.target)
    pipeline = dataclasses.replace(pipeline, device=chosen_devices(args, [args.target]).get(args.target))
    profile = PROFILES[args.profile]
    examples = args.examples if args.examples is not None else profile.examples
    if not 1 <= examples <= MAX_EXAMPLES:
        raise StrataError(f"error: --examples must be from 1 to {MAX_EXAMPLES:,}, got {examples}")
    if not spec:
        # The default pipeline is the one the autotuner tunes: `tuned-not-worse` too (a replay's as well).
        register_tuner(autotuner())
    try:
        if args.replay:
            return _replay(args.replay, pipeline, args.seed)
        print(f"strata fuzz: {examples} examples, {pipeline.describe()}, seed {args.seed}, profile {args.profile}",
              file=sys.stderr)
        outcome = fuzz(pipeline, examples, args.seed, profile.max_ops, progress=lambda s: print(s, file=sys.stderr))
    finally:
        register_tuner(None)
    if outcome.failure is not None:
        return _report_failure(args, spec, pipeline, outcome)
    grown = f"; cost-monotonic on {outcome.grown} grown models" if outcome.grown else ""
    print(f"strata fuzz: {outcome.examples} examples checked, every property holds"
          f" ({pipeline.describe()}, seed {args.seed}, {outcome.seconds:.1f} s{grown})")
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))
