"""
`strata compile` cost reports and `strata targets`: the table, the JSON
schema, --target all, device selection and overrides, --schedule, --plot.
"""

import json
from pathlib import Path

import pytest

import jsonschema

from strata.compiler.cli import main
from strata.compiler.reports.report import ALL_TARGETS_SCHEMA, REPORT_SCHEMA

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SMALL_GPT2 = ["-D", "S=16", "-D", "D=48", "-D", "H=4", "-D", "L=2"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _json(argv, capsys) -> dict:
    code, out, err = run([*argv, "--report", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_json_schema(target, capsys):
    data = _json(["compile", SAMPLES / "gpt2.model", *SMALL_GPT2, "--target", target], capsys)
    assert data["target"] == target and data["device"]
    kernels = data["kernels"]
    assert kernels and data["total"]["time_s"] > 0
    for k in kernels:
        for key in ("name", "ops", "flops", "bytes", "time_s", "bound"):
            assert key in k, key
        assert k["time_s"] > 0 and k["bound"] in ("compute", "memory", "latency", "transfer")
        if target == "tpu":
            assert {"compute_cycles", "stall_cycles", "dataflow"} <= set(k)
    assert data["total"]["time_s"] == pytest.approx(sum(k["time_s"] for k in kernels))
    attention = [k for k in kernels if k["name"].startswith("attention")]
    assert len(attention) == 2 and "graph.softmax" in attention[0]["ops"]


@pytest.mark.parametrize("sample", ["mlp", "resnet18", "gpt2", "llama", "vit"])
def test_every_sample_has_a_full_report_on_every_target(sample, capsys):
    """Full-size samples, all three targets; the JSON validates against its schema."""
    data = _json(["compile", SAMPLES / f"{sample}.model", "--target", "all"], capsys)
    jsonschema.validate(data, ALL_TARGETS_SCHEMA)
    for report in data["targets"].values():
        jsonschema.validate(report, REPORT_SCHEMA)
        assert report["total"]["time_s"] > 0


def test_schema_rejects_a_report_without_required_fields(capsys):
    data = _json(["compile", SAMPLES / "mlp.model", "--target", "tpu"], capsys)
    del data["kernels"][0]["compute_cycles"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, REPORT_SCHEMA)


def test_table_is_the_default_report(capsys):
    code, out, _ = run(["compile", SAMPLES / "mlp.model"], capsys)
    assert code == 0
    assert "gpu on h100" in out and "gemm_0" in out and "total:" in out and "bound" in out


def test_emit_prints_ir_not_the_report(capsys):
    code, out, _ = run(["compile", SAMPLES / "mlp.model", "--emit", "hardware", "--no-debuginfo"], capsys)
    assert code == 0 and out.startswith("builtin.module") and "total:" not in out
    code, _, err = run(["compile", SAMPLES / "mlp.model", "--emit", "loop", "--report", "json"], capsys)
    assert code == 1 and "-o FILE" in err


def test_target_all_side_by_side(capsys):
    code, out, err = run(["compile", SAMPLES / "mlp.model", "--target", "all"], capsys)
    assert code == 0, err
    assert "the same model on every target" in out
    for header in ("gpu (h100)", "tpu (tpu-v4)", "lpu (groq-lpu)"):
        assert header in out
    data = _json(["compile", SAMPLES / "mlp.model", "--target", "all"], capsys)
    assert set(data["targets"]) == {"gpu", "tpu", "lpu"}


def test_device_and_spec_overrides_change_the_estimate(capsys, tmp_path):
    args = ["compile", SAMPLES / "mlp.model", "-D", "B=1024", "--target", "gpu"]
    h100 = _json(args, capsys)["total"]["time_s"]
    a100 = _json([*args, "--device", "a100"], capsys)
    assert a100["device"] == "a100" and a100["total"]["time_s"] > h100
    slower = _json([*args, "--spec", "peak_flops_tf32=1e13", "--spec", "hbm_bandwidth_measured=1e11"], capsys)
    assert slower["total"]["time_s"] > h100
    code, _, err = run([*args, "--spec", "warp_drive=9"], capsys)
    assert code == 1 and "warp_drive" in err
    code, _, err = run([*args, "--device", "tpu-v4"], capsys)
    assert code == 1 and "tpu" in err
    own = tmp_path / "mine.toml"
    own.write_text((SAMPLES.parent / "backends/specs/h100.toml").read_text().replace('name = "h100"', 'name = "mine"'))
    assert _json([*args, "--device-file", own], capsys)["device"] == "mine"


def test_schedule_pins_a_choice(capsys):
    args = ["compile", SAMPLES / "mlp.model", "--target", "tpu"]
    for flow in ("os", "ws", "is"):
        data = _json([*args, "--schedule", f"dataflow={flow}"], capsys)
        gemms = [k for k in data["kernels"] if k["name"].startswith("gemm")]
        assert gemms and {k["dataflow"] for k in gemms} == {flow}
    code, _, err = run([*args, "--schedule", "dataflow=xs"], capsys)
    assert code == 1 and "dataflow" in err
    code, _, err = run([*args, "--schedule", "nonsense=1"], capsys)
    assert code == 1 and "choices:" in err


def test_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "roofline.png"
    code, _, err = run(["compile", SAMPLES / "mlp.model", "--target", "all", "--report", "none", "--plot", png], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_lists_every_device(capsys):
    code, out, _ = run(["targets"], capsys)
    assert code == 0
    for name in ("h100", "a100", "tpu-v4", "tpu-v5e", "groq-lpu", "xeon-spr-2c", "epyc-9654", "--device host"):
        assert name in out
