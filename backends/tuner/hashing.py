"""
Structural hashing of kernels: the tuning database's kernel key.

Two kernels that compute the same thing on the same types hash equal, so the
twelve blocks of GPT-2 are tuned once and a renamed or moved model reuses its
results. The hash covers the generic form of the op: op names, operand and
result types (shapes, dtypes, layouts), attributes and properties (kind,
tile sizes, ...), the nesting of regions and blocks and the use-def wiring.
It leaves out

- SSA value names (the clone's results and block arguments lose their
  `name_hint`; values print numbered in order),
- source locations (`print_debuginfo=False`),
- the values the op uses from outside itself (its operands): they become
  fresh block arguments of their types, so only their types and the order
  of use count, not where they come from,
- the attributes/properties named in `ignore`, by default `kernel_name`,
  the per-instance label (`gemm_0`, `gemm_7`) that `fuse` gives each kernel.

Printing is the costly part (about 3 ms a kernel, and the autotuner hashes
every kernel of every fusion and layout variant), so digests are memoised
by `structural_key`, an in-memory tuple of the same structure built
without printing: the digest itself, the one stored in the database, is
always the printed text's.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Collection

from xdsl.ir import Block, Operation, SSAValue
from xdsl.printer import Printer

IGNORED_ATTRIBUTES = ("kernel_name",)
"""Labels that tell instances apart without changing what they compute."""

MEMO_SIZE = 4096
"""Digests kept by `structural_hash`; the memo starts afresh when full."""
_digests: dict[tuple, str] = {}


def _external_values(op: Operation) -> list[SSAValue]:
    """Values used inside `op` (or by it) but defined outside, in order of first use."""
    inside: set[SSAValue] = set()
    for inner in op.walk():
        inside.update(inner.results)
        for region in inner.regions:
            for block in region.blocks:
                inside.update(block.args)
    external: dict[SSAValue, None] = {}
    for inner in op.walk():
        for operand in inner.operands:
            if operand not in inside:
                external.setdefault(operand, None)
    return list(external)


def canonical_text(op: Operation, ignore: Collection[str] = IGNORED_ATTRIBUTES) -> str:
    """The text `structural_hash` hashes: a detached, name-free clone printed generically."""
    external = _external_values(op)
    stand_ins = Block(arg_types=[v.type for v in external])
    clone = op.clone(value_mapper=dict(zip(external, stand_ins.args)))
    for arg in stand_ins.args:
        arg.name_hint = None
    for inner in clone.walk():
        for result in inner.results:
            result.name_hint = None
        for region in inner.regions:
            for block in region.blocks:
                for arg in block.args:
                    arg.name_hint = None
        for name in ignore:
            inner.properties.pop(name, None)
            inner.attributes.pop(name, None)
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True, print_debuginfo=False).print_op(clone)
    return out.getvalue()


def structural_key(op: Operation, ignore: Collection[str] = IGNORED_ATTRIBUTES) -> tuple:
    """
    A hashable tuple equal for two ops exactly when their canonical texts
    are (up to attributes equal but printed differently, such as 0.0 and
    -0.0): op names, types, attributes and properties but `ignore`d ones,
    regions and blocks, and every operand as the number of its definition
    inside `op` (results and block arguments, in walk order) or of its
    first use among the values from outside.
    """
    numbers: dict[SSAValue, int] = {}
    for inner in op.walk():
        for region in inner.regions:
            for block in region.blocks:
                numbers.update((arg, len(numbers) + i) for i, arg in enumerate(block.args))
        numbers.update((result, len(numbers) + i) for i, result in enumerate(inner.results))
    external: dict[SSAValue, int] = {}

    def ref(value: SSAValue) -> tuple:
        if value in numbers:
            return (numbers[value],)
        return ("outside", external.setdefault(value, len(external)), value.type)

    def shape(inner: Operation) -> tuple:
        regions = tuple(
            tuple((tuple(arg.type for arg in block.args), tuple(shape(o) for o in block.ops)) for block in region.blocks)
            for region in inner.regions
        )
        return (
            inner.name,
            tuple(ref(v) for v in inner.operands),
            tuple(r.type for r in inner.results),
            tuple(sorted((k, v) for k, v in inner.attributes.items() if k not in ignore)),
            tuple(sorted((k, v) for k, v in inner.properties.items() if k not in ignore)),
            len(inner.successors),
            regions,
        )

    return (tuple(sorted(ignore)), shape(op))


def structural_hash(op: Operation, ignore: Collection[str] = IGNORED_ATTRIBUTES) -> str:
    """
    The first 16 hex digits of the sha256 of `op`'s structure (see the module
    docstring): equal for copies that differ only in value names, locations,
    where their operands come from and `ignore`d labels; different for any
    change of op, type, shape, dtype, layout or attribute.
    """
    try:
        key = structural_key(op, ignore)
        digest = _digests.get(key)
    except TypeError:  # an unhashable attribute: print every time
        key, digest = None, None
    if digest is None:
        digest = hashlib.sha256(canonical_text(op, ignore).encode()).hexdigest()[:16]
        if key is not None:
            if len(_digests) >= MEMO_SIZE:
                _digests.clear()
            _digests[key] = digest
    return digest
