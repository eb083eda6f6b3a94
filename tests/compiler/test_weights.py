"""Tests of model signatures, random values, `.npz` loading and output files."""

from __future__ import annotations

import re
import zipfile

import ml_dtypes
import numpy as np
import pytest
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, StringAttr
from xdsl.ir import Block, Region

from strata.compiler.execution import weights as W
from strata.compiler.diagnostics import StrataError
from strata.dialects.graph import INPUT_ATTR, PARAM_ATTR
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import tensor_type

BF16 = ml_dtypes.bfloat16


def model(args, body) -> func.FuncOp:
    """A verified model function; `args` is a list of (attr, name, dtype, shape)."""
    types = [tensor_type(dtype, shape) for _, _, dtype, shape in args]
    attrs = ArrayAttr([DictionaryAttr({key: StringAttr(name)}) for key, name, _, _ in args])
    block = Block(arg_types=types)
    with ImplicitBuilder(block) as values:
        results = body(*values)
        func.ReturnOp(*results)
    f = func.FuncOp("m", (types, [r.type for r in results]), Region(block), arg_attrs=attrs)
    f.verify()
    return f


def embedding_model() -> func.FuncOp:
    """tokens index two tables (50 and 30 rows); `other` is an unrelated int input."""

    def body(x, tokens, other, wte, wpe, w, b):
        e1 = g.GatherOp(wte, tokens, tensor_type("f32", (4, 3))).result
        e2 = g.GatherOp(wpe, tokens, tensor_type("f32", (4, 3))).result
        ids = g.CastOp(x, tensor_type("i32", (2, 3))).result
        e3 = g.GatherOp(wte, ids, tensor_type("f32", (2, 3, 3))).result
        h = g.MatmulOp(e1, w, tensor_type("f32", (4, 5))).result
        return [g.AddOp(h, b, h.type).result, e2, e3, other]

    return model(
        [
            (INPUT_ATTR, "x", "f32", (2, 3)),
            (INPUT_ATTR, "tokens", "i32", (4,)),
            (INPUT_ATTR, "other", "i8", (6,)),
            (PARAM_ATTR, "wte", "f32", (50, 3)),
            (PARAM_ATTR, "pos.0.wpe", "f32", (30, 3)),
            (PARAM_ATTR, "w", "f32", (3, 5)),
            (PARAM_ATTR, "b", "f32", (5,)),
        ],
        body,
    )


SPECS = [
    W.ArgSpec("x", "input", (2, 3), "f32"),
    W.ArgSpec("tokens", "input", (4,), "i32"),
    W.ArgSpec("other", "input", (6,), "i8"),
    W.ArgSpec("wte", "param", (50, 3), "f32"),
    W.ArgSpec("pos.0.wpe", "param", (30, 3), "f32"),
    W.ArgSpec("w", "param", (3, 5), "f32"),
    W.ArgSpec("b", "param", (5,), "f32"),
]


# --------------------------------------------------------------------------- signature


def test_model_signature_in_argument_order():
    assert W.model_signature(embedding_model()) == SPECS
    assert SPECS[3].type_str == "f32[50, 3]"


def test_integer_input_ranges_take_the_smallest_table():
    # `ids` (a cast, not an argument) does not count; `other` is no gather id.
    assert W.integer_input_ranges(embedding_model()) == {"tokens": 30}


# --------------------------------------------------------------------------- random values


def test_random_values_shapes_dtypes_and_determinism():
    ranges = {"tokens": 30}
    a = W.random_values(SPECS, np.random.default_rng(7), ranges)
    b = W.random_values(SPECS, np.random.default_rng(7), ranges)
    assert list(a) == [s.name for s in SPECS]
    for spec in SPECS:
        assert a[spec.name].shape == spec.shape
        assert a[spec.name].dtype == spec.numpy_dtype
        np.testing.assert_array_equal(a[spec.name], b[spec.name])
    c = W.random_values(SPECS, np.random.default_rng(8), ranges)
    assert not np.array_equal(a["w"], c["w"])


def test_random_integers_stay_in_range():
    specs = [W.ArgSpec("ids", "input", (5000,), "i32"), W.ArgSpec("n", "input", (5000,), "i64"),
             W.ArgSpec("small", "input", (5000,), "i8")]
    v = W.random_values(specs, np.random.default_rng(0), {"ids": 7, "small": 1000})
    assert v["ids"].min() == 0 and v["ids"].max() == 6
    assert v["n"].min() == 0 and v["n"].max() == W.DEFAULT_INT_RANGE - 1
    assert v["small"].max() <= 127


@pytest.mark.parametrize(
    "shape, fan_in",
    [((400, 300), 400), ((64, 32, 3, 3), 32 * 9), ((4, 200, 100), 200), ((5000,), None), ((), None)],
)
def test_random_param_scale(shape, fan_in):
    (value,) = W.random_values([W.ArgSpec("p", "param", shape, "f32")], np.random.default_rng(0)).values()
    if fan_in is None:
        # rank <= 1: 1 + 0.1 * N(0, 1)
        assert value.size == 1 or (abs(value.mean() - 1.0) < 0.01 and abs(value.std() - 0.1) < 0.01)
        assert abs(float(np.mean(value)) - 1.0) < 0.5
    else:
        assert abs(value.mean()) < 0.01 / np.sqrt(fan_in) * 30
        assert abs(value.std() * np.sqrt(fan_in) - 1.0) < 0.03


def test_random_float_inputs_are_standard_normal_and_low_precision_rounds():
    specs = [W.ArgSpec("x", "input", (100, 100), "f32"), W.ArgSpec("y", "input", (100, 100), "bf16")]
    v = W.random_values(specs, np.random.default_rng(0))
    assert abs(v["x"].std() - 1.0) < 0.03 and abs(v["x"].mean()) < 0.03
    assert v["y"].dtype == BF16 and abs(v["y"].astype(np.float32).std() - 1.0) < 0.03


def test_random_values_keep_deep_products_tame():
    # 20 chained `x @ w` with random weights neither explode nor vanish.
    specs = [W.ArgSpec(f"w{i}", "param", (256, 256), "f32") for i in range(20)]
    ws = W.random_values(specs, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((8, 256)).astype(np.float32)
    for w in ws.values():
        x = x @ w
    assert 0.1 < x.std() < 10


# --------------------------------------------------------------------------- load_npz


@pytest.fixture
def weights_file(tmp_path):
    values = W.random_values(SPECS, np.random.default_rng(0), {"tokens": 30})
    path = tmp_path / "w.npz"
    np.savez(path, **{s.name: values[s.name] for s in SPECS if s.kind == "param"})
    return str(path), values


def test_load_npz_round_trip(weights_file):
    path, values = weights_file
    loaded = W.load_npz(path, SPECS, "param")
    assert list(loaded) == ["wte", "pos.0.wpe", "w", "b"]
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, values[name])


def save(tmp_path, name="w.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def param_arrays(**changes):
    arrays = {s.name: np.zeros(s.shape, np.float32) for s in SPECS if s.kind == "param"}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def test_wrong_shape_names_entry_and_both_shapes(tmp_path):
    path = save(tmp_path, **param_arrays(w=np.zeros((3, 6), np.float32)))
    with pytest.raises(StrataError) as info:
        W.load_npz(path, SPECS, "param")
    assert str(info.value) == f"error: weights file {path}: 'w' has shape [3, 6], the model needs [3, 5]"


def test_missing_entry(tmp_path):
    path = save(tmp_path, **param_arrays(b=None, w=None))
    with pytest.raises(StrataError, match=r"weights file .*: missing 'w' \(f32\[3, 5\]\), 'b' \(f32\[5\]\)"):
        W.load_npz(path, SPECS, "param")
    loaded = W.load_npz(path, SPECS, "param", allow_missing=True)
    assert sorted(loaded) == ["pos.0.wpe", "wte"]


def test_extra_entry_is_an_error_even_when_missing_is_allowed(tmp_path):
    path = save(tmp_path, **param_arrays(**{"pos.1.wpe": np.zeros((30, 3))}))
    with pytest.raises(StrataError, match=r"'pos.1.wpe' is not a param of the model; did you mean 'pos.0.wpe'\?"):
        W.load_npz(path, SPECS, "param", allow_missing=True)


def test_inputs_file(tmp_path):
    path = save(tmp_path, "in.npz", x=np.ones((2, 3)), tokens=np.arange(4), other=np.arange(6, dtype=np.int16))
    loaded = W.load_npz(path, SPECS, "input")
    assert loaded["x"].dtype == np.float32 and loaded["tokens"].dtype == np.int32
    assert loaded["other"].dtype == np.int8
    path = save(tmp_path, "in2.npz", x=np.ones((2, 3)), wte=np.zeros((50, 3)))
    with pytest.raises(StrataError, match=r"inputs file .*: 'wte' is not an input of the model"):
        W.load_npz(path, SPECS, "input", allow_missing=True)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("tokens", np.zeros(4, np.float32), "'tokens' has dtype float32, which does not convert to i32"),
        ("tokens", np.array([0, 1, 2, 2**40]), r"does not convert to i32 \(values out of range: i32 holds -2147483648..2147483647\)"),
        ("x", np.full((2, 3), "a"), "'x' has dtype <U1, which does not convert to f32"),
        ("x", np.zeros((2, 3), np.complex64), "'x' has dtype complex64"),
    ],
)
def test_non_convertible_dtypes(tmp_path, name, value, message):
    arrays = {"x": np.zeros((2, 3)), "tokens": np.zeros(4, np.int32), "other": np.zeros(6, np.int8)}
    arrays[name] = value
    with pytest.raises(StrataError, match=message):
        W.load_npz(save(tmp_path, "in.npz", **arrays), SPECS, "input")


def test_float_entries_round_to_low_precision(tmp_path):
    specs = [W.ArgSpec("p", "param", (2,), "bf16")]
    path = save(tmp_path, p=np.array([1 + 2**-8, 3.0]))
    (value,) = W.load_npz(path, specs, "param").values()
    assert value.dtype == BF16 and value.astype(np.float32).tolist() == [1.0, 3.0]


def test_object_entry_is_an_error(tmp_path):
    path = save(tmp_path, **param_arrays(b=np.array([object()] * 5, dtype=object)))
    with pytest.raises(StrataError, match="'b' holds Python objects"):
        W.load_npz(path, SPECS, "param")


def test_invalid_files(tmp_path):
    text = tmp_path / "t.npz"
    text.write_text("hello")
    empty = tmp_path / "e.npz"
    empty.write_bytes(b"")
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    good = open(save(tmp_path, **param_arrays()), "rb").read()
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(good[: len(good) // 2])
    corrupt = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(corrupt, "w") as z:
        z.writestr("b.npy", b"not an array")
    cases = [
        (text, "not a valid .npz archive"),
        (empty, "not a valid .npz archive"),
        (npy, "holds a single .npy array"),
        (truncated, "not a valid .npz archive"),
        (tmp_path, "is a directory"),
        (tmp_path / "nope.npz", "no such file"),
    ]
    for path, message in cases:
        with pytest.raises(StrataError, match=message):
            W.load_npz(str(path), SPECS, "param")
    with pytest.raises(StrataError, match="'b' is corrupt"):
        W.load_npz(str(corrupt), SPECS, "param", allow_missing=True)


# --------------------------------------------------------------------------- outputs


def test_save_outputs_writes_exactly_the_path(tmp_path):
    path = tmp_path / "result.bin"
    outputs = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1.5, 2.0], BF16), np.array(3, np.int32)]
    W.save_outputs(str(path), outputs)
    with np.load(path) as z:
        assert z.files == ["out0", "out1", "out2"]
        np.testing.assert_array_equal(z["out0"], outputs[0])
        assert z["out1"].dtype == np.float32 and z["out1"].tolist() == [1.5, 2.0]
        assert z["out2"].dtype == np.int32 and z["out2"].shape == ()
    with pytest.raises(StrataError, match="cannot write outputs file"):
        W.save_outputs(str(tmp_path / "no" / "dir.npz"), outputs)


@pytest.mark.parametrize("dtype", ["bf16", "f8e4m3", "f8e5m2", "f16"])
def test_low_precision_outputs_load_back_as_inputs(tmp_path, dtype):
    """Issue 18: an f8e5m2 output (NumPy kind 'f') was written as is, a file NumPy cannot load."""
    value = W.random_value(W.ArgSpec("out0", "input", (3, 2), dtype), np.random.default_rng(0))
    path = str(tmp_path / "out.npz")
    W.save_outputs(path, [value])
    with np.load(path) as z:
        assert z["out0"].dtype == (np.float16 if dtype == "f16" else np.float32)
    (back,) = W.load_npz(path, [W.ArgSpec("out0", "input", (3, 2), dtype)], "input").values()
    assert back.dtype == value.dtype
    np.testing.assert_array_equal(back.astype(np.float32), value.astype(np.float32))


@pytest.mark.parametrize("dtype, message", [
    (ml_dtypes.float8_e5m2, "'p' has a dtype NumPy cannot read back"),
    (BF16, r"'p' has dtype \|V2, which does not convert to bf16 \(an ml_dtypes array saved as is"),
])
def test_ml_dtypes_arrays_saved_as_is_are_explained(tmp_path, dtype, message):
    path = save(tmp_path, p=np.zeros(2, dtype))
    with pytest.raises(StrataError, match=message):
        W.load_npz(path, [W.ArgSpec("p", "param", (2,), "bf16")], "param")


def test_summarize():
    outputs = [
        np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
        np.array([1, 2, 3], np.int64),
        np.array([0.0, np.nan, -np.inf, 2.0], np.float32).astype(BF16),
        np.zeros((0, 3), np.float32),
    ]
    lines = W.summarize(outputs).splitlines()
    assert lines[0] == "out0: f32[2, 2] mean=2.5 std=1.11803 min=1 max=4"
    assert lines[1] == "out1: i64[3] mean=2 std=0.816497 min=1 max=3"
    assert lines[2] == "out2: bf16[4] mean=1 std=1 min=0 max=2 nan=1 inf=1"
    assert re.fullmatch(r"out3: f32\[0, 3\] \(empty\)", lines[3])


def test_load_npz_infers_the_kind_from_the_specs(tmp_path):
    inputs = [s for s in SPECS if s.kind == "input"]
    path = save(tmp_path, "in.npz", x=np.ones((2, 3)), y=np.ones(3))
    with pytest.raises(StrataError, match=r"^error: inputs file .*: 'y' is not an input of the model"):
        W.load_npz(path, inputs, allow_missing=True)
    with pytest.raises(StrataError, match=r"^error: arguments file .*: 'x' is not an argument of the model"):
        W.load_npz(path, [], allow_missing=True)
    assert W.load_npz(save(tmp_path, "none.npz"), []) == {}
    with pytest.raises(ValueError, match="needs `kind`"):
        W.load_npz(path, SPECS)
