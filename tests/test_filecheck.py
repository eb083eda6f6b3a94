"""Run the FileCheck-style golden IR tests under tests/filecheck with lit."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent / "filecheck"


@pytest.mark.parametrize(
    "suite", sorted(p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "Inputs")
)
def test_lit_suite(suite):
    lit = Path(sys.executable).parent / "lit"
    result = subprocess.run(
        [str(lit), "-v", str(ROOT / suite)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
