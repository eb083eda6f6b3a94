"""
dialects/device.py: shipped device files, their sources, user files and overrides; the device recorded in the IR.
"""

import re
import tomllib

import pytest

from strata.dialects.device import (
    DEFAULT_DEVICE,
    DEVICES,
    REQUIRED_KEYS,
    SHAPE_KEYS,
    DeviceSpec,
    SpecError,
    default_device,
    load_device,
    load_device_file,
    device_attr,
    device_from_attr,
    module_device,
    parse_sources,
    resolve_device,
    set_module_device,
    with_overrides,
)

EXPECTED_TARGETS = {"h100": "gpu", "a100": "gpu", "tpu-v4": "tpu", "tpu-v5e": "tpu", "groq-lpu": "lpu",
                    "xeon-spr-2c": "cpu", "epyc-9654": "cpu"}
UNSOURCED = {"name", "target", "description"}


def _numeric(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_every_device_loads(name):
    spec = load_device(name)
    assert spec.name == name == DEVICES[name].stem
    assert spec.target == EXPECTED_TARGETS[name]
    for key in REQUIRED_KEYS[spec.target]:
        assert key in spec


def test_devices_and_defaults():
    assert set(DEVICES) == set(EXPECTED_TARGETS)
    assert DEFAULT_DEVICE == {"gpu": "h100", "tpu": "tpu-v4", "lpu": "groq-lpu", "cpu": "xeon-spr-2c"}
    for target, name in DEFAULT_DEVICE.items():
        assert default_device(target).target == target
        assert default_device(target) is load_device(name)


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_every_number_has_a_source_comment(name):
    spec = load_device(name)
    for key, value in spec.items():
        if _numeric(value) or key not in UNSOURCED:
            assert spec.sources.get(key, "").strip(), f"{name}: {key} has no '# source:' comment"
    assert set(spec.sources) <= set(spec.values)


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_files_are_flat_and_comments_agree_with_tomllib(name):
    text = DEVICES[name].read_text()
    raw = tomllib.loads(text)
    assert all(not isinstance(v, dict) for v in raw.values())
    assert {k for k, v in raw.items() if isinstance(v, list)} <= set(SHAPE_KEYS)
    assert set(parse_sources(text)) == {k for k in raw if k not in UNSOURCED}


@pytest.mark.parametrize("name", ["tpu-v4", "tpu-v5e"])
def test_tpu_peak_matches_arrays_and_clock(name):
    s = load_device(name)
    assert s["num_arrays"] == s["tensorcores"] * s["mxus_per_tensorcore"]
    peak = s["num_arrays"] * s["array_rows"] * s["array_cols"] * 2 * s["clock_hz"]
    assert peak == pytest.approx(s["peak_flops_bf16"], rel=0.01)


@pytest.mark.parametrize("name", ["h100", "a100"])
def test_gpu_peak_matches_sms_and_clock(name):
    s = load_device(name)
    peak = s["sms"] * s["tensor_flop_per_cycle_per_sm"] * s["clock_hz"]
    assert peak == pytest.approx(s["peak_flops_bf16"], rel=0.01)
    assert s.tile_memory_bytes == s["smem_per_block_bytes"] <= s["smem_per_sm_bytes"]


@pytest.mark.parametrize("name", ["xeon-spr-2c", "epyc-9654"])
def test_cpu_peak_matches_cores_lanes_pipes_and_clock(name):
    s = load_device(name)
    peak = s["cores"] * s["simd_lanes_f32"] * s["fma_pipes"] * 2 * s["clock_hz"]
    assert peak == pytest.approx(s["peak_flops_fp32"], rel=0.01)
    assert s["l1d_bytes_per_core"] < s["l2_bytes_per_core"] < s["l3_bytes"]
    assert s["l1_bandwidth_per_core"] > s["l2_bandwidth_per_core"] and s["l3_bandwidth"] > s["dram_bandwidth"]
    # A CPU's kernel tiles live in one core's L2; the device's memory is its DRAM.
    assert (s.tile_memory_bytes, s.memory_bytes) == (s["l2_bytes_per_core"], s["dram_bytes"])
    assert s.layout_tile == ()


def test_cpu_spec_needs_its_keys_and_keeps_l1_under_l2(tmp_path):
    text = load_device("xeon-spr-2c").path.read_text()
    path = tmp_path / "cpu.toml"
    path.write_text(text.replace("fma_pipes = 2", "# no pipes"))
    with pytest.raises(SpecError, match="missing required key 'fma_pipes' for target 'cpu'"):
        load_device_file(path)
    with pytest.raises(SpecError, match="l1d_bytes_per_core = 4194304 is more than l2_bytes_per_core"):
        with_overrides(load_device("xeon-spr-2c"), ["l1d_bytes_per_core=4194304"])


def test_lpu_derived_figures():
    s = load_device("groq-lpu")
    assert s["mxm_macs"] == s["mxm_planes"] * s["mxm_rows"] * s["mxm_cols"]
    assert s["vector_lanes"] == s["superlanes"] * s["lanes_per_superlane"]
    assert s["vector_alus"] == s["vector_lanes"] * s["lanes_per_superlane"]
    assert s.tile_memory_bytes == s["sram_bytes"] == 220 * 2**20
    assert "hbm_bytes" not in s


def test_spec_is_a_read_only_mapping():
    s = load_device("h100")
    assert s["sms"] == 132 and s.get("l2_bandwidth") is None and s.get("l2_bandwidth", 7) == 7
    with pytest.raises(KeyError, match="'h100' has no key 'l2_bandwidth'"):
        s["l2_bandwidth"]
    with pytest.raises(TypeError):
        s.values["sms"] = 1
    assert isinstance(s, DeviceSpec) and len(s) == len(dict(s))
    assert hash(s) == hash(load_device_file(DEVICES["h100"])) and s == load_device_file(DEVICES["h100"])


def test_overrides_apply_and_record_their_source():
    base = load_device("tpu-v4")
    spec = with_overrides(base, ["array_rows=64", "clock_hz=1.5e9", " array_cols = 256 ", "dataflow=os"])
    assert (spec["array_rows"], spec["array_cols"], spec["clock_hz"], spec["dataflow"]) == (64, 256, 1.5e9, "os")
    assert isinstance(spec["array_rows"], int)
    assert spec.sources["array_rows"] == "override array_rows=64 (was 128)"
    assert base["array_rows"] == 128
    assert spec != base and spec.fingerprint() != base.fingerprint()
    assert with_overrides(base, []) == base


def test_override_may_add_a_known_optional_key():
    spec = with_overrides(load_device("h100"), ["l2_bandwidth=5.5e12"])
    assert spec["l2_bandwidth"] == 5.5e12


@pytest.mark.parametrize(("item", "message"), [
    ("foo=1", r"unknown key 'foo'; valid keys for tpu device 'tpu-v4': .*array_cols, array_rows"),
    ("array_rows=0", "key 'array_rows' must be a positive number, got 0"),
    ("clock_hz=-1e9", "key 'clock_hz' must be a positive number"),
    ("hbm_bandwidth=inf", "key 'hbm_bandwidth' must be a positive number"),
    ("array_rows=64.5", "'array_rows' is a count and must be a whole number"),
    ("array_rows=lots", "value 'lots' is not a number"),
    ("dataflow=rs", "'dataflow' must be one of ws, os, is"),
    ("target=gpu", "unknown key 'target'"),
    ("array_rows", "override 'array_rows' is not KEY=VALUE"),
    ("=3", "is not KEY=VALUE"),
])
def test_bad_overrides_raise_spec_error(item, message):
    with pytest.raises(SpecError, match=message):
        with_overrides(load_device("tpu-v4"), [item])


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


USER_TPU = """\
name = "my-tpu"
target = "tpu"
clock_hz = 1e9  # source: my lab # notes
hbm_bytes = 8_000_000_000
hbm_bandwidth = 5e11
array_rows = 64
array_cols = 64
num_arrays = 2
peak_flops_bf16 = 16.4e12
vmem_bytes = 16777216
vreg_sublanes = 8
vreg_lanes = 128
dataflow = "ws"
preferred_gemm_tile = [64, 64, 64]
description = "a # in a string"  # source: not a number
"""


def test_user_file_loads(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text(USER_TPU)
    spec = load_device_file(path)
    assert (spec.name, spec.target, spec["array_rows"], spec.path) == ("my-tpu", "tpu", 64, path)
    assert spec.sources["clock_hz"] == "my lab # notes"
    assert spec["description"] == "a # in a string"
    assert load_device(str(path)) == spec


def test_user_file_missing_required_key(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text(USER_TPU.replace("array_cols = 64\n", ""))
    with pytest.raises(SpecError, match=re.escape(f"{path}: missing required key 'array_cols' for target 'tpu'")):
        load_device_file(path)


@pytest.mark.parametrize(("edit", "message"), [
    (("array_rows = 64", "array_rows = 0"), "key 'array_rows' must be a positive number, got 0"),
    (("hbm_bandwidth = 5e11", "hbm_bandwidth = -5e11"), "key 'hbm_bandwidth' must be a positive number"),
    (("num_arrays = 2", "num_arrays = 2.5"), "'num_arrays' is a count"),
    (("clock_hz = 1e9", 'clock_hz = "fast"'), "key 'clock_hz' must be a number"),
    (('target = "tpu"', 'target = "fpga"'), "key 'target' must be one of gpu, tpu, lpu"),
    (('target = "tpu"\n', ""), "missing required key 'target'"),
    (('name = "my-tpu"\n', ""), "missing required key 'name'"),
    (("vmem_bytes = 16777216", "[vmem]\nbytes = 1"), "key 'vmem' must be a positive number or a string, got a table"),
    (("array_rows = 64", "array_rows = [64]"), "key 'array_rows' must be a positive number or a string, got list"),
    (("array_rows = 64", "array_rows = = 64"), "invalid TOML"),
])
def test_bad_user_files_name_file_and_key(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(USER_TPU.replace(*edit))
    with pytest.raises(SpecError, match=message) as info:
        load_device_file(path)
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_device(tmp_path):
    with pytest.raises(SpecError, match="cannot read device spec"):
        load_device_file(tmp_path / "nope.toml")
    with pytest.raises(SpecError, match="unknown device 'h200'; shipped devices: a100, epyc-9654, groq-lpu, h100"):
        load_device("h200")
    with pytest.raises(SpecError, match="unknown target 'npu'"):
        default_device("npu")


def test_parse_sources_ignores_plain_comments():
    text = 'a = 1  # source: x\nb = 2  # just a note\n# c = 3  # source: y\nd = "#e"  # Source: z\n'
    assert parse_sources(text) == {"a": "x", "d": "z"}


# --------------------------------------------------------------------------- the device in the IR


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_device_round_trips_through_the_dlti_attribute_and_text(name):
    from xdsl.dialects.builtin import ModuleOp

    from strata.compiler.ir import parse_module, print_module

    spec = with_overrides(load_device(name), ["clock_hz=1.2345678901234e9"])
    module = ModuleOp([])
    set_module_device(module, spec)
    text = print_module(module)
    assert "dlti.target_system_spec" in text and f'"name" = "{name}"' in text
    back = module_device(parse_module(text, "dump.mlir"))
    assert back == spec and dict(back) == dict(spec)
    assert back.fingerprint() == spec.fingerprint()


def test_devices_of_other_targets_stay_apart():
    """xDSL's DLTI attributes compare equal whatever they hold; the device read back must not."""
    gpu, lpu = device_attr(load_device("h100")), device_attr(load_device("groq-lpu"))
    assert device_from_attr(gpu).name == "h100" and device_from_attr(lpu).name == "groq-lpu"


def test_resolve_device_records_the_default_and_refuses_another_target():
    from xdsl.dialects.builtin import ModuleOp

    module = ModuleOp([])
    assert resolve_device(module, "tpu") == default_device("tpu")
    assert module_device(module) == default_device("tpu")
    assert resolve_device(module) == default_device("tpu")
    with pytest.raises(SpecError, match="compiled for tpu device 'tpu-v4', not for target 'gpu'"):
        resolve_device(module, "gpu")


def test_facts_that_shape_the_ir_have_names():
    h100, v4, lpu = load_device("h100"), load_device("tpu-v4"), load_device("groq-lpu")
    assert (h100.tile_memory_bytes, v4.tile_memory_bytes, lpu.tile_memory_bytes) == (232448, 33554432, 230686720)
    assert (h100.layout_tile, v4.layout_tile, lpu.layout_tile) == ((), (8, 128), (320,))
    assert (h100.gemm_tile, v4.gemm_tile, lpu.gemm_tile) == ((128, 128, 64), (128, 128, 128), (320, 320, 320))
    assert h100.mma_shape("bf16") == (16, 8, 16) and h100.mma_shape("f32") == (16, 8, 8) and v4.mma_shape("bf16") == ()
    assert load_device("a100")["smem_per_block_bytes"] == 166912


def test_shape_keys_are_validated_and_overridable():
    spec = with_overrides(load_device("h100"), ["preferred_gemm_tile=64,64,32"])
    assert spec.gemm_tile == (64, 64, 32)
    for bad in ("preferred_gemm_tile=64,64", "preferred_gemm_tile=64,0,32", "preferred_gemm_tile=a,b,c"):
        with pytest.raises(SpecError, match="list of 3 positive whole numbers"):
            with_overrides(load_device("h100"), [bad])


def test_a_spec_pickles_with_its_sources_and_overrides():
    """A spec crosses into another process (the host calibration's fresh interpreters) whole."""
    import pickle

    spec = with_overrides(load_device("xeon-spr-2c"), {"clock_hz": 3.0e9})
    again = pickle.loads(pickle.dumps(spec))
    assert dict(again) == dict(spec) and dict(again.sources) == dict(spec.sources)
    assert (again.name, again.target, again.path) == (spec.name, spec.target, spec.path)
