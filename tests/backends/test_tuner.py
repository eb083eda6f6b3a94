"""
backends.tuner: spaces, strategies, the search loop, the tuning database and
structural hashing.

The search-quality tests run the strategies on synthetic landscapes shaped
like the cost models' tiling costs (roofline time over tile sizes in powers
of two, quantisation waste ceil(M/m)*m, wave quantisation over cores, an
on-chip capacity limit that makes big tiles illegal, loop-order and dataflow
factors, LPU chip partitioning) with 250-1700 legal points each.
"""

from __future__ import annotations

import json
import math
import re
import multiprocessing
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from strata.backends.tuner import (
    DEFAULT_STRATEGY,
    SPACE_VERSION,
    STRATEGIES,
    Space,
    TuningDatabase,
    TuningKey,
    default_path,
    make_strategy,
    point_key,
    structural_hash,
    tune,
)
from strata.backends.tuner.database import FORMAT
from strata.backends.cost import COST_MODEL_VERSION

# -- synthetic landscapes ----------------------------------------------------


def _tiles(bound: int, low: int = 16, high: int = 1024) -> list[int]:
    values = {p for p in (2**i for i in range(11)) if low <= p < bound and p <= high}
    if bound <= high:
        values.add(bound)
    return sorted(values) or [bound]


def systolic_gemm(M, N, K, batch=1, capacity=2**20, dataflows=("ws", "os", "is"), cores=1, array=128,
                  peak=2.75e14, bandwidth=1.2e12, step=2e-7, elem=2):
    """A GEMM on a systolic array (or, with cores > 1 and a small `array`, a GPU's SMs)."""
    points = []
    ks = sorted({p for p in _tiles(K) if K % p == 0} | ({K} if K <= 1024 else set()))
    for b in sorted({1, batch}):
        for m in _tiles(M):
            for n in _tiles(N):
                for k in ks:
                    if b * (m * k + k * n + 2 * m * n) * elem > capacity:
                        continue  # does not fit on chip: illegal
                    for order in ((0, 1, 2, 3), (0, 1, 3, 2)):
                        for flow in dataflows:
                            point = {"tiles": (b, m, n, k), "order": order}
                            if len(dataflows) > 1:
                                point["dataflow"] = flow
                            points.append(point)

    def fill(a, c):
        return (a / (math.ceil(a / array) * array)) * (c / (math.ceil(c / array) * array))

    def cost(point):
        b, m, n, k = point["tiles"]
        flow = point.get("dataflow", "os")
        tm, tn, tk, tb = math.ceil(M / m), math.ceil(N / n), math.ceil(K / k), math.ceil(batch / b)
        use = {"ws": fill(k, n), "os": fill(m, n), "is": fill(m, k)}[flow]
        tiles = tb * tm * tn
        waves = math.ceil(tiles / cores)
        compute = 2 * batch * (tm * m) * (tn * n) * (tk * k) / (peak * use * tiles / (waves * cores))
        a_reuse, b_reuse = (0.7, 1.0) if point["order"][-1] == 3 else (1.0, 0.7)
        out = 1 if flow == "os" else 1 + 0.25 * (tk - 1)
        traffic = elem * batch * (M * K * tn * a_reuse + K * N * tm * b_reuse + M * N * out)
        latency = tiles * tk * step * (1 + (array / m if flow == "ws" else 0.3))
        return max(compute, traffic / bandwidth) + latency + 3e-6

    return points, cost


def lpu_gemm(M, N, K, elem=2, sram=230e6):
    """A GEMM partitioned over LPU chips, with row tiles, vector width and column tiles."""
    points = []
    for chips in (1, 2, 4, 8, 16):
        if K * N * elem / chips > 0.9 * sram:
            continue
        for m in _tiles(M, 1, 512):
            for vector in (80, 160, 320):
                for n in _tiles(N, 64, 2048):
                    if (m * vector + vector * n + m * n) * elem <= 2**20:
                        points.append({"chips": chips, "rows": m, "vector": vector, "cols": n})

    def cost(p):
        chips, m, v, n = p["chips"], p["rows"], p["vector"], p["cols"]
        cycles = math.ceil(M / m) * m * math.ceil(K / v) * math.ceil(N / chips / n) * n / 5120 * (320 / v) ** 0.3
        transfer = (chips - 1) * M * N * elem / (chips * 1e11) + (chips > 1) * 2e-6
        return cycles / 9e8 + transfer + math.ceil(M / m) * math.ceil(N / chips / n) * 3e-7

    return points, cost


GPU = {"dataflows": ("os",), "cores": 132, "array": 16, "capacity": 2**18, "peak": 9.9e14, "bandwidth": 3.35e12}
LANDSCAPES = {
    "tpu qkv gemm": lambda: systolic_gemm(1024, 2304, 768),
    "tpu conv": lambda: systolic_gemm(3136, 64, 576),
    "gpu mlp gemm": lambda: systolic_gemm(1024, 768, 3072, **GPU),
    "gpu attention": lambda: systolic_gemm(1024, 1024, 64, batch=12, **GPU),
    "lpu mlp": lambda: lpu_gemm(1024, 3072, 768),
}
SEEDS = range(11)
SAMPLES = Path(__file__).parents[2] / "samples"


@pytest.fixture(scope="module")
def landscapes():
    built = {}
    for name, make in LANDSCAPES.items():
        points, cost = make()
        space = Space(points)
        built[name] = (space, [cost(p) for p in space.points])
    return built


def _best_after(name: str, space: Space, costs: list[float], budget: int, seed: int) -> float:
    strategy = make_strategy(name, space, seed)
    spent = 0
    while spent < budget and not strategy.done:
        for i in strategy.ask(min(strategy.batch_size, budget - spent)):
            strategy.tell(i, costs[i])
            spent += 1
    return strategy.best()[1]


def test_landscapes_are_realistic(landscapes):
    for name, (space, costs) in landscapes.items():
        assert 200 <= space.size <= 2000, name
        assert max(costs) / min(costs) > 10, name  # bad schedules are much worse
        near = sum(c <= 1.02 * min(costs) for c in costs)
        assert near <= 0.03 * space.size, name  # a needle: few points lie within 2%


def test_default_strategy_finds_near_optimum_with_a_tenth_of_the_space(landscapes):
    assert DEFAULT_STRATEGY == "evolutionary"
    beaten = []
    for name, (space, costs) in landscapes.items():
        optimum = min(costs)
        budget = math.ceil(0.10 * space.size)
        guided = statistics.median(_best_after(DEFAULT_STRATEGY, space, costs, budget, s) / optimum - 1 for s in SEEDS)
        blind = statistics.median(_best_after("random", space, costs, budget, s) / optimum - 1 for s in SEEDS)
        assert guided <= 0.02, f"{name}: median gap {guided:.1%} at a 10% budget"
        assert guided <= blind, f"{name}: evolutionary {guided:.1%} vs random {blind:.1%}"
        beaten.append(guided < blind)
    assert sum(beaten) >= len(beaten) - 1


def test_exhaustive_finds_the_optimum(landscapes):
    space, costs = landscapes["gpu attention"]
    result = tune(space, lambda points: [costs[space.index(p)] for p in points], "exhaustive", budget=space.size)
    assert result.best_cost == min(costs)
    assert result.evaluations == space.size and result.stopped == "budget"
    assert [t.index for t in result.history] == list(range(space.size))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_never_ask_twice_and_cover_the_space(name):
    points, cost = systolic_gemm(256, 128, 64, capacity=2**18, dataflows=("ws", "os"))
    space = Space(points)
    strategy = make_strategy(name, space, seed=3)
    strategy.tell(5, cost(space[5]))  # a point told first (the default) is never asked
    seen = [5]
    step = 0
    while not strategy.done:
        asked = strategy.ask(1 + step % 7)
        assert asked, "asked nothing before the space was exhausted"
        seen += asked
        # tell some late, out of order, as a parallel tuner would
        for i in reversed(asked):
            strategy.tell(i, cost(space[i]))
        step += 1
    assert len(seen) == len(set(seen)) == space.size
    assert strategy.ask(4) == []


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_are_deterministic(name, landscapes):
    space, costs = landscapes["tpu conv"]

    def run(seed):
        result = tune(space, lambda ps: [costs[space.index(p)] for p in ps], name, budget=40, seed=seed,
                      default_index=0)
        return [t.index for t in result.history]

    assert run(7) == run(7)
    if name != "exhaustive":
        assert run(7) != run(8)


def test_failed_points_are_never_best():
    space = Space({"x": x} for x in range(20))
    result = tune(space, lambda ps: [math.nan if p["x"] % 2 else float(100 - p["x"]) for p in ps],
                  "exhaustive", budget=20)
    assert result.best_point == {"x": 18} and result.best_cost == 82.0


# -- the search loop -----------------------------------------------------------


def _counting(space, costs):
    calls = []

    def evaluate_many(points):
        calls.append(len(points))
        return [costs[space.index(p)] for p in points]

    return evaluate_many, calls


def test_default_point_is_evaluated_first(landscapes):
    space, costs = landscapes["tpu conv"]
    evaluate, calls = _counting(space, costs)
    seen = []
    result = tune(space, evaluate, budget=30, seed=1, default_index=17, on_progress=lambda *a: seen.append(a))
    assert result.history[0].index == 17 and calls[0] == 1
    assert result.default_cost == costs[17]
    assert result.best_cost <= result.default_cost and result.speedup >= 1
    assert result.evaluations == 30 == sum(calls) and result.cache_hits == 0
    assert len({t.index for t in result.history}) == 30
    assert seen[-1][:2] == (30, 30) and seen[-1][2] == result.best_cost
    assert json.loads(json.dumps(result.as_json()))["space_size"] == space.size


def test_second_tune_with_the_cache_evaluates_nothing(landscapes, tmp_path):
    space, costs = landscapes["gpu mlp gemm"]
    db = TuningDatabase(tmp_path / "tuning.jsonl")
    key = TuningKey("k", "gpu", "dev")
    evaluate, calls = _counting(space, costs)

    def recording(points):
        results = evaluate(points)
        db.record_many(key, zip(points, results))
        return results

    first = tune(space, recording, budget=36, seed=4, cached=db.lookup(key), default_index=0)
    assert first.evaluations == 36 and first.cache_hits == 0
    calls.clear()
    second = tune(space, recording, budget=36, seed=4, cached=db.lookup(key), default_index=0)
    assert calls == [] and second.evaluations == 0 and second.cache_hits == 36
    assert (second.best_point, second.best_cost) == (first.best_point, first.best_cost)
    assert second.history == [t.__class__(t.index, t.point, t.cost, True) for t in first.history]
    # A bigger budget continues where the first run stopped.
    third = tune(space, recording, budget=50, seed=4, cached=db.lookup(key), default_index=0)
    assert third.cache_hits == 36 and third.evaluations == 14
    # With free cache hits, the budget counts new evaluations only.
    fourth = tune(space, evaluate, budget=10, seed=4, cached=db.lookup(key), default_index=0,
                  cache_hits_use_budget=False)
    assert fourth.evaluations == 10 and fourth.cache_hits >= 50


def test_time_limit_is_respected(landscapes):
    space, costs = landscapes["tpu qkv gemm"]

    def slow(points):
        time.sleep(0.02 * len(points))
        return [costs[space.index(p)] for p in points]

    start = time.monotonic()
    result = tune(space, slow, budget=space.size, seed=0, time_limit_s=0.3, default_index=0)
    elapsed = time.monotonic() - start
    assert result.stopped == "time"
    assert elapsed < 0.3 + 0.02 * 8 + 0.3  # at most one batch past the limit, plus slack
    assert 1 <= result.evaluations < space.size


def test_budget_and_exhaustion():
    space = Space({"a": a, "b": b} for a in range(3) for b in range(3))
    result = tune(space, lambda ps: [p["a"] + p["b"] for p in ps], budget=100, seed=0)
    assert result.stopped == "exhausted" and result.evaluations == 9 and result.best_cost == 0
    with pytest.raises(ValueError):
        tune(space, lambda ps: [0.0] * len(ps), budget=0)
    with pytest.raises(ValueError, match="unknown strategy"):
        tune(space, lambda ps: [0.0] * len(ps), "annealing", budget=3)


# -- spaces ----------------------------------------------------------------------


def test_point_key_is_canonical():
    assert point_key({"order": [1, 0], "tiles": (64, 32)}) == point_key({"tiles": [64, 32], "order": (1, 0)})
    assert point_key({"b": True, "a": "ws"}) == '{"a":"ws","b":true}'
    assert point_key({"t": (1, 2)}) != point_key({"t": (2, 1)})


def test_space_basics():
    points = [{"tiles": (m, n), "flow": f} for m in (16, 32, 64) for n in (16, 32, 64) for f in ("os", "ws")
              if m * n <= 1024]
    space = Space(points + points[:3])  # repeats are kept once
    assert space.size == len(points) and space.knobs == ("tiles", "flow")
    assert space.index({"tiles": [32, 16], "flow": "ws"}) == points.index({"tiles": (32, 16), "flow": "ws"})
    assert {"tiles": (64, 64), "flow": "os"} not in space
    with pytest.raises(KeyError):
        space.index({"tiles": (64, 64), "flow": "os"})
    assert [a.name for a in space.axes] == ["tiles[0]", "tiles[1]", "flow"]
    assert space.candidates["flow"] == ("os", "ws")
    with pytest.raises(ValueError):
        Space([{"a": 1}, {"b": 1}])
    with pytest.raises(ValueError):
        Space([])


def test_neighbours():
    # m, n in 16..128, k in {16, 32}; m*n > 4096 is illegal; order is a permutation knob.
    points = [{"tiles": (m, n, k), "order": o} for m in (16, 32, 64, 128) for n in (16, 32, 64, 128)
              for k in (16, 32) for o in ((0, 1), (1, 0)) if m * n <= 4096]
    space = Space(points)
    axes = {a.name: a.ordinal for a in space.axes}
    assert axes == {"tiles[0]": True, "tiles[1]": True, "tiles[2]": True, "order": False}
    here = space.index({"tiles": (32, 64, 16), "order": (0, 1)})
    near = {point_key(space[j]) for j in space.neighbours(here)}
    expect = [
        ((16, 64, 16), (0, 1)), ((64, 64, 16), (0, 1)), ((32, 32, 16), (0, 1)), ((32, 128, 16), (0, 1)),
        ((32, 64, 32), (0, 1)), ((32, 64, 16), (1, 0)),  # single moves
        ((64, 32, 16), (0, 1)), ((16, 128, 16), (0, 1)),  # swaps: m up n down, m down n up
        ((16, 32, 16), (0, 1)), ((64, 64, 32), (0, 1)), ((32, 64, 32), (1, 0)),  # other pairs
    ]
    for tiles, order in expect:
        assert point_key({"tiles": tiles, "order": order}) in near, (tiles, order)
    assert point_key({"tiles": (64, 128, 16), "order": (0, 1)}) not in near  # illegal
    assert point_key({"tiles": (128, 64, 16), "order": (0, 1)}) not in near  # two steps on one axis
    assert here not in space.neighbours(here)
    # A single move skips illegal steps: from 16 along n, past nothing illegal...
    corner = space.index({"tiles": (128, 16, 16), "order": (0, 1)})
    assert space.index({"tiles": (64, 16, 16), "order": (0, 1)}) in space.neighbours(corner)
    # ...and on an axis with a hole, to the next legal value.
    holes = Space({"x": x, "y": y} for x in range(5) for y in range(2) if not (x == 2 and y == 0))
    assert holes.index({"x": 3, "y": 0}) in holes.neighbours(holes.index({"x": 1, "y": 0}))


# -- the tuning database --------------------------------------------------------------


KEY = TuningKey("abc123", "tpu", "devfp")


def test_database_round_trip(tmp_path):
    db = TuningDatabase(tmp_path / "sub" / "tuning.jsonl")
    assert db.lookup(KEY) == {}
    db.record(KEY, {"tiles": (128, 64), "flow": "ws"}, 1.5e-5)
    db.record_many(KEY, [({"tiles": [64, 64], "flow": "os"}, 2e-5), ({"tiles": (32, 64), "flow": "os"}, math.inf)])
    db.record(TuningKey("abc123", "tpu", "other-device"), {"tiles": (1, 1), "flow": "ws"}, 1.0)
    found = db.lookup(KEY)
    assert found == {
        point_key({"tiles": (128, 64), "flow": "ws"}): 1.5e-5,
        point_key({"tiles": (64, 64), "flow": "os"}): 2e-5,
        point_key({"tiles": (32, 64), "flow": "os"}): math.inf,
    }
    line = json.loads((tmp_path / "sub" / "tuning.jsonl").read_text().splitlines()[0])
    assert line["kernel"] == "abc123" and line["space_version"] == SPACE_VERSION
    assert line["cost_model_version"] == COST_MODEL_VERSION and line["format"] == FORMAT
    assert line["point"] == {"tiles": [128, 64], "flow": "ws"} and line["time"] > 1e9
    both = db.load([KEY, TuningKey("abc123", "tpu", "other-device"), TuningKey("x", "gpu", "d")])
    assert len(both[KEY]) == 3 and len(both[TuningKey("abc123", "tpu", "other-device")]) == 1


def test_database_skips_bad_lines_with_warnings(tmp_path):
    path = tmp_path / "tuning.jsonl"
    db = TuningDatabase(path)
    db.record(KEY, {"x": 1}, 1.0)
    good = path.read_text()
    foreign_version = json.loads(good)
    foreign_version["cost_model_version"] = "0-old"
    foreign_format = dict(json.loads(good), format=99)
    lines = [
        good.strip(),
        "this is not json",
        json.dumps({"kernel": "abc123"}),  # not a record
        json.dumps(foreign_version),
        json.dumps(foreign_format),
        "[1, 2",
        good.strip().replace('"x":1', '"x":2'),
        '{"format": 1, "kernel": "abc123", "tar',  # a crashed writer's last line
    ]
    path.write_text("\n".join(lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = db.lookup(KEY)
    assert found == {point_key({"x": 1}): 1.0, point_key({"x": 2}): 1.0}
    messages = [str(w.message) for w in caught]
    for line in (2, 3, 4, 5, 6, 8):
        assert any(m.startswith(f"{path}:{line}:") for m in messages), (line, messages)
    assert any("truncated" in m for m in messages)
    # Appending after the truncated line keeps the new record whole.
    db.record(KEY, {"x": 3}, 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert db.lookup(KEY)[point_key({"x": 3})] == 3.0


def _writer(path: str, worker: int, count: int) -> None:
    db = TuningDatabase(path)
    for j in range(count):
        db.record(TuningKey("k" * 16, "gpu", "d" * 16), {"tiles": (worker, j), "order": (0, 1, 2)}, worker + 1 + j / 1000)


def test_concurrent_appends_keep_every_line(tmp_path):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    path = tmp_path / "tuning.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), w, 200)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(30)
        assert p.exitcode == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 800
    assert {tuple(r["point"]["tiles"]) for r in records} == {(w, j) for w in range(4) for j in range(200)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(TuningDatabase(path).lookup(TuningKey("k" * 16, "gpu", "d" * 16))) == 800


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_TUNING_DB", str(tmp_path / "a" / "db.jsonl"))
    assert default_path() == tmp_path / "a" / "db.jsonl" and (tmp_path / "a").is_dir()
    monkeypatch.delenv("STRATA_TUNING_DB")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_path() == tmp_path / "cache" / "strata" / "tuning.jsonl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".cache" / "strata" / "tuning.jsonl"
    assert TuningDatabase().path == default_path()


# -- structural hashing -------------------------------------------------------------

KERNEL_IR = """
func.func @main(%x: tensor<8x16xf32>, %w: tensor<16x4xf32>, %b: tensor<4xf32>) -> tensor<8x4xf32> {
  %y = graph.kernel "gemm_0" (%x, %w, %b) {kind = "gemm"}
      : (tensor<8x16xf32>, tensor<16x4xf32>, tensor<4xf32>) -> tensor<8x4xf32> {
  ^bb0(%a0: tensor<8x16xf32>, %a1: tensor<16x4xf32>, %a2: tensor<4xf32>):
    %mm = graph.matmul %a0, %a1 : tensor<8x16xf32>, tensor<16x4xf32> -> tensor<8x4xf32>
    %sum = graph.add %mm, %a2 : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
    graph.yield %sum : tensor<8x4xf32>
  } loc("mlp.model":3:5)
  func.return %y : tensor<8x4xf32>
}
"""


def _kernel_hash(text: str) -> str:
    from strata.compiler.ir import parse_module
    from strata.dialects.graph.kernel import KernelOp

    module = parse_module(text, "test.mlir")
    return structural_hash(next(op for op in module.walk() if isinstance(op, KernelOp)))


def test_structural_hash_ignores_names_and_locations():
    base = _kernel_hash(KERNEL_IR)
    assert len(base) == 16 and int(base, 16) >= 0
    renamed = (KERNEL_IR.replace("%x", "%input").replace("%mm", "%t7").replace("%a0", "%arg")
               .replace('"gemm_0"', '"gemm_11"').replace('"mlp.model":3:5', '"elsewhere/net.model":40:1'))
    assert renamed != KERNEL_IR and _kernel_hash(renamed) == base


@pytest.mark.parametrize("change", [
    ("tensor<8x16xf32>", "tensor<8x32xf32>", "tensor<16x4xf32>", "tensor<32x4xf32>"),  # shape
    ("f32", "f16"),  # dtype
    ('{kind = "gemm"}', '{kind = "gemm", tiles = array<i64: 64, 64, 32>}'),  # an attribute
    ("graph.add %mm, %a2", "graph.sub %mm, %a2"),  # an op
])
def test_structural_hash_sees_every_real_change(change):
    text = KERNEL_IR
    for old, new in zip(change[::2], change[1::2]):
        text = text.replace(old, new)
    assert text != KERNEL_IR and _kernel_hash(text) != _kernel_hash(KERNEL_IR)


def test_structural_hash_dedups_model_blocks():
    from strata.compiler.driver import Stage, compile_module
    from strata.compiler.frontend import compile_source, load_model
    from strata.dialects.graph.kernel import KernelOp

    def kernels(module):
        compile_module(module, "gpu", Stage.FUSED)
        return [op for op in module.walk() if isinstance(op, KernelOp)]

    sizes = {"S": 64, "D": 96, "H": 4, "L": 3}
    blocks = kernels(load_model(str(SAMPLES / "gpt2.model"), sizes))
    by_kind: dict[str, set[str]] = {}
    for op in blocks:
        by_kind.setdefault(op.kind.data, set()).add(structural_hash(op))
    attention = [op for op in blocks if op.kind.data == "attention"]
    assert len(attention) == 3 and len({op.kernel_name.data for op in attention}) == 3
    assert len(by_kind["attention"]) == 1  # the three layers' attention kernels: one hash
    assert len({structural_hash(op) for op in blocks}) < len(blocks)

    # Renaming the model's inputs and moving the file keeps every hash.
    source = (SAMPLES / "mlp.model").read_text()
    renamed = source
    for old, new in (("x", "pixels"), ("w1", "first"), ("h", "hidden")):
        renamed = re.sub(rf"\b{old}\b", new, renamed)
    assert "pixels" in renamed and "hidden" in renamed
    one = [structural_hash(op) for op in kernels(compile_source(source, "samples/mlp.model"))]
    two = [structural_hash(op) for op in kernels(compile_source(renamed, "/tmp/elsewhere/renamed.model"))]
    assert one == two and len(one) >= 2
    # Another batch size is another kernel.
    three = [structural_hash(op) for op in kernels(compile_source(source.replace("B = 64", "B = 32"), "m.model"))]
    assert not set(three) & set(one)


@pytest.mark.parametrize("target", ["gpu", "tpu"])
def test_structural_key_tells_apart_exactly_what_the_printed_text_does(target):
    """The memo of `structural_hash` never joins kernels the digest separates, nor splits equal ones."""
    from strata.backends.tuner.hashing import canonical_text, structural_key
    from strata.compiler.driver import Stage, compile_module
    from strata.compiler.frontend import load_model
    from strata.dialects.graph.kernel import KernelOp
    from strata.dialects.graph.layout import RelayoutOp

    ops = []
    for name, sizes in (("gpt2", {"S": 64, "D": 96, "H": 4, "L": 2}), ("resnet18", {}), ("mlp", {})):
        module = load_model(str(SAMPLES / f"{name}.model"), sizes)
        compile_module(module, target, Stage.LAYOUT)
        ops += [op for op in module.walk() if isinstance(op, KernelOp | RelayoutOp)]
    keys = [structural_key(op) for op in ops]
    texts = [canonical_text(op) for op in ops]
    assert len(set(texts)) > 10
    for i in range(len(ops)):
        for j in range(i):
            assert (keys[i] == keys[j]) == (texts[i] == texts[j]), (ops[i], ops[j])


def test_conv_space_tiles_filters_and_covers_the_image_exactly():
    """A conv's output channels are its implicit GEMM's N; its image tiles include the divisors."""
    from strata.compiler.driver import Stage, compile_module
    from strata.compiler.frontend import compile_source
    from strata.compiler.tuning.spaces import kernel_points
    from strata.dialects.device import default_device
    from strata.dialects.graph.kernel import KernelOp
    from strata.passes.tile import dim_candidates

    source = (
        "model m(x: f32[1, 64, 56, 56]) -> f32[1, 64, 56, 56] {\n  param w: f32[64, 64, 3, 3]\n"
        "  return relu(conv2d(x, w, padding=1))\n}\n"
    )
    module = compile_source(source, "conv.model")
    compile_module(module, "gpu", Stage.LAYOUT)
    kernel = next(op for op in module.walk() if isinstance(op, KernelOp))
    batch, filters, rows, cols = dim_candidates(kernel)
    assert batch == [1] and filters == [8, 16, 32, 64]
    assert rows == cols == [4, 7, 8, 14, 16, 28, 32, 56]
    tiles = {p["tiles"] for p in kernel_points(kernel, default_device("gpu"))}
    assert (1, 32, 4, 28) in tiles and (1, 8, 7, 8) in tiles


def test_surrogate_places_tiles_by_logarithm():
    space = Space([{"t": t} for t in (4, 7, 8, 14, 16, 28, 32, 56)])
    features, _ = space.features()
    assert features[0, 0] == 0 and features[-1, 0] == 1
    assert abs(features[2, 0] - features[1, 0]) < 0.1 < features[3, 0] - features[2, 0]  # 7~8, 8 far from 14
    evenly = Space([{"t": 2**i} for i in range(3, 8)]).features()[0][:, 0]
    assert np.allclose(evenly, np.linspace(0, 1, 5))
