"""
The target facts passes need (`passes/targets.toml`): on-chip capacity,
layout tile and preferred GEMM tile per target. Read once; pure lookups.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TARGETS = ("gpu", "tpu", "lpu")
TARGET_ATTR = "strata.target"
"""Module attribute recording the target the IR is being compiled for."""


@dataclass(frozen=True)
class TargetFacts:
    name: str
    onchip_bytes: int
    layout_tile: tuple[int, ...]
    gemm_tile: tuple[int, int, int]


@cache
def target_facts(name: str) -> TargetFacts:
    table = target_table(name)
    return TargetFacts(name, table["onchip_bytes"], tuple(table["layout_tile"]), tuple(table["gemm_tile"]))


@cache
def target_table(name: str) -> dict:
    """Every entry of `name`'s section of targets.toml, for target-specific lowering choices."""
    if name not in TARGETS:
        raise ValueError(f"unknown target '{name}' (targets: {', '.join(TARGETS)})")
    return tomllib.loads((Path(__file__).parent / "targets.toml").read_text())[name]


def module_target(module, default: str = "gpu") -> str:
    """The target recorded on a module by `fuse`, or `default`."""
    attr = module.attributes.get(TARGET_ATTR)
    return getattr(attr, "data", default)
