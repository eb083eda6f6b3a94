"""`--device host`: this machine's CPU measured once, cached by fingerprint, and what names it."""

import shutil

import pytest

from strata.compiler import host
from strata.compiler.cli import main
from strata.compiler.diagnostics import StrataError
from strata.compiler.execution import native
from strata.dialects.device import load_device

ZEN4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "flags": "fma avx2 avx512f"}
XEON = {"vendor_id": "GenuineIntel", "cpu family": "6", "flags": "fma avx2 avx512f"}
AVX2 = {"vendor_id": "GenuineIntel", "cpu family": "6", "flags": "fma avx2"}

FIGURES = {"peak": 1.0e11, "fork": 1e-6, "l1_1": 2e11, "l2_1": 1e11, "l3_1": 3e10, "dram_1": 2e10,
           "l3_2": 5e10, "dram_2": 3e10, "cold": 8e-7, "reach": 1e12, "l3_store": 2.5e10, "dram_store": 8e9}


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    """A cache of its own, two cores, and a probe that returns `FIGURES` and counts its runs."""
    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(host, "cores", lambda: 2)
    runs = []

    def probe(threads):
        runs.append(threads)
        return dict(FIGURES)

    monkeypatch.setattr(host, "run_probe", probe)
    monkeypatch.setattr(host, "calibrate", lambda spec: [("gemm_efficiency", 0.9, "[calibrated] in a test")])
    return runs


def _units(info):
    return {key: value for key, value, _ in host.vector_unit(info)}


def test_the_vector_unit_follows_vendor_family_and_flags():
    assert _units(ZEN4) == {"simd_lanes_f32": 16, "fma_pipes": 1, "vector_registers": 32}
    assert _units({**ZEN4, "cpu family": "26"})["fma_pipes"] == 2
    assert _units(XEON) == {"simd_lanes_f32": 16, "fma_pipes": 2, "vector_registers": 32}
    assert _units(AVX2) == {"simd_lanes_f32": 8, "fma_pipes": 2, "vector_registers": 16}


def test_the_clock_is_the_peak_over_lanes_pipes_and_two(monkeypatch):
    # Two cores whatever this process may use now (a 2-thread native run earlier in the session binds
    # the calling thread to one core: OMP_PROC_BIND).
    monkeypatch.setattr(host, "cores", lambda: 2)
    keys = {key: value for key, value, _ in host.measured_keys(FIGURES, ZEN4, "here")}
    assert keys["clock_hz"] == pytest.approx(1e11 / (16 * 1 * 2), rel=1e-3)
    assert keys["peak_flops_fp32"] == pytest.approx(2e11, rel=1e-3)
    assert keys["l3_bandwidth"] == 5e10 and keys["dram_bandwidth"] == 3e10
    # A byte stored costs the read over the store bandwidth, between 1 and 2 (write-allocate).
    assert keys["l3_store_cost"] == pytest.approx(1.2) and keys["dram_store_cost"] == 2.0
    # The cold 4 KiB read less its bytes at one thread's DRAM bandwidth (0.2 us at 20 GB/s).
    assert keys["dram_latency_s"] == pytest.approx(8e-7 - 4096 / 2e10, rel=1e-2)


def test_the_l3_is_what_one_thread_keeps_its_data_in():
    """`l3_bytes` is sysfs' size unless the probe's buffers fall to DRAM's bandwidth sooner (a guest of
    a big socket: sysfs gives the socket's L3)."""
    assert host.l3_key(32 << 20, 1e12, "here", "probe")[1] == 32 << 20
    key, value, how = host.l3_key(480 << 20, 111.8e6, "here", "probe")
    assert key == "l3_bytes" and value == int(111.8e6) // 4096 * 4096 and "480 MiB" in how


def test_measured_once_then_read_from_the_cache(fake_machine, tmp_path):
    first = host.host_device()
    assert first.name == "host" and first.target == "cpu" and first["gemm_efficiency"] == 0.9
    assert first["peak_flops_fp32"] == pytest.approx(2e11, rel=1e-3)
    again = host.host_device()
    assert fake_machine == [2] and again["clock_hz"] == first["clock_hz"]
    cached = list((tmp_path / "cache").glob("host-*.toml"))
    assert len(cached) == 1 and "# source:" in cached[0].read_text()


def test_a_new_probe_version_measures_again(fake_machine, monkeypatch):
    host.host_device()
    monkeypatch.setattr(host, "HOST_SPEC_VERSION", host.HOST_SPEC_VERSION + 1)
    host.host_device()
    assert fake_machine == [2, 2]


def test_a_broken_cache_file_says_how_to_measure_again(fake_machine, tmp_path):
    host.host_device()
    path = next((tmp_path / "cache").glob("host-*.toml"))
    path.write_text("name = \n")
    with pytest.raises(StrataError, match="delete .*host-.*toml to measure this host again"):
        host.host_device()


def test_device_host_names_it_on_the_command_line(fake_machine, capsys):
    code = main(["compile", "samples/mlp.model", "--target", "cpu", "--device", "host", "--report", "json"])
    out = capsys.readouterr().out
    assert code == 0 and '"device": "host"' in out


def test_a_linear_key_is_solved_from_two_estimates_and_the_run(monkeypatch):
    # estimate(key) = 3 us x key + 1 us: 7 us at key = 2, 4 us at key = 1; the run took 7 us: key = 2.
    monkeypatch.setattr(host, "_timed_apart", lambda text, spec, pick, repeat: (7e-6, 7e-6))
    monkeypatch.setattr(host, "_estimate", lambda text, spec, pick: 4e-6)
    value, how = host.calibrate_key(load_device("xeon-spr-2c"), "cycles_per_flop", "model m() {\n  return x\n}\n", "row",
                                    inverse=False)
    assert value == pytest.approx(2.0) and "[calibrated]" in how and "7.00 us" in how


def test_a_share_of_the_peak_is_solved_from_its_inverse(monkeypatch):
    # estimate(e) = 2 us / e + 1 us: 3 us at e = 1, 5 us at e = 0.5; the run took 5 us: e = 0.5.
    monkeypatch.setattr(host, "_timed_apart", lambda text, spec, pick, repeat: (3e-6, 5e-6))
    monkeypatch.setattr(host, "_estimate", lambda text, spec, pick: 5e-6)
    value, _ = host.calibrate_key(load_device("xeon-spr-2c"), "gemm_efficiency", "model m() {\n  return x\n}\n", "gemm",
                                  inverse=True)
    assert value == pytest.approx(0.5)


def test_without_the_toolchain_only_the_shipped_gemm_efficiency_is_written(monkeypatch):
    monkeypatch.setattr(native, "tools_available", lambda: False)
    keys = host.calibrate(load_device("xeon-spr-2c"))
    assert [(key, value) for key, value, _ in keys] == [("gemm_efficiency", 0.82)]
    assert "[assumed]" in keys[0][2]


def test_the_shipped_default_stays_the_calibration_machine():
    assert load_device("xeon-spr-2c")["gemm_efficiency"] == 0.82


@pytest.mark.skipif(not shutil.which("cc") or "fma" not in host.cpuinfo().get("flags", "").split()
                    or not native.tools_available(), reason="needs a C compiler, FMA units and the MLIR tools")
@pytest.mark.slow
def test_this_machine_measures_to_a_loadable_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path))
    spec = host.host_device()
    assert spec["peak_flops_fp32"] > 1e9 and spec["l1_bandwidth_per_core"] > spec["dram_bandwidth_per_core"]
    assert 0 < spec["gemm_efficiency"] <= 1 and spec["cycles_per_flop"] > 0 and spec["cycles_per_relayout_element"] > 0


def test_the_probe_reads_half_of_each_level():
    """
    Each thread sums half its level; with every thread, their buffers fill half the L3 together; a
    hypervisor's whole-host L3 neither sends the L3's buffer to DRAM nor DRAM's past 1 GiB.
    """
    kib, mib = 1 << 10, 1 << 20
    assert host.probe_buffers(2, {"l1d": 32 * kib, "l2": mib, "l3": 32 * mib}) == {
        "l1": 16 * kib, "l2": 512 * kib, "l3": 16 * mib, "l3_all": 8 * mib, "dram": 256 * mib, "dram_all": 64 * mib}
    many = host.probe_buffers(8, {"l1d": 48 * kib, "l2": 2 * mib, "l3": 96 * mib})
    assert many["l3_all"] == 6 * mib and many["dram_all"] == 64 * mib
    guest = host.probe_buffers(2, {"l1d": 48 * kib, "l2": 2 * mib, "l3": 480 * mib})
    assert guest["l3"] == guest["l3_all"] == 16 * mib and guest["dram"] == guest["dram_all"] == 256 * mib
    assert host.probe_buffers(64, {})["l3_all"] == 2 * mib  # never within the L2


def test_each_probe_figure_is_the_best_of_its_processes():
    """The highest peak and bandwidths, the shortest fork and join and cold read: a slow process only ever loses."""
    slow = {**FIGURES, "l3_1": 1.5e10, "dram_1": 1.4e10, "fork": 2e-6, "cold": 2e-6}
    fast = {**FIGURES, "peak": 0.9e11}
    best = host.best_figures([slow, fast, slow])
    assert best == FIGURES


def test_the_cores_are_those_the_process_started_with():
    """
    Once native code has run an OpenMP region, the runtime binds the calling thread to one core
    (`OMP_PROC_BIND`): `cores()` still counts the cores the process started with, and a child
    started with `on_starting_cores` gets them back (the probes, `measure --processes`).
    """
    import os
    import subprocess
    import sys

    started = set(host.STARTING_AFFINITY)
    if len(started) < 2:
        pytest.skip("one core: nothing to narrow")
    try:
        os.sched_setaffinity(0, {min(started)})
        assert host.cores() == len(started)
        out = subprocess.run([sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"],
                             capture_output=True, text=True, preexec_fn=host.on_starting_cores)
        assert int(out.stdout) == len(started)
    finally:
        os.sched_setaffinity(0, started)
