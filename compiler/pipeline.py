"""
The pass registry and pipelines.

`available_passes()` maps every pass name a pipeline string may use to its
class: strata's own passes and xDSL's upstream ones (`canonicalize`, `cse`,
...); `parse_pipeline` reads a pipeline string. The default pipeline per
target is written in `driver.py` (`default_pipeline`).
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass, PassPipeline
from xdsl.transforms import get_all_passes
from xdsl.utils.exceptions import ArgSpecParseError

from strata.compiler.diagnostics import StrataError
from strata.passes.assign_dataflow import AssignDataflowPass
from strata.passes.assign_layout import AssignLayoutPass
from strata.passes.export_mlir import ExportMlirPass
from strata.passes.fuse import FusePass
from strata.passes.lower_to_hardware import LowerToHardwarePass
from strata.passes.lower_to_loops import LowerToLoopsPass
from strata.passes.place_chips import PlaceChipsPass
from strata.passes.shard import ShardPass
from strata.passes.tile import TilePass

STRATA_PASSES: tuple[type[ModulePass], ...] = (
    ShardPass, FusePass, AssignLayoutPass, TilePass, LowerToLoopsPass, PlaceChipsPass, AssignDataflowPass, LowerToHardwarePass,
    ExportMlirPass,
)


def available_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Every pass name usable in `-p`, strata's shadowing xDSL's."""
    passes = dict(get_all_passes())
    for cls in STRATA_PASSES:
        passes[cls.name] = lambda cls=cls: cls
    return passes


def parse_pipeline(spec: str, callback=None) -> PassPipeline:
    """Parse `a,b{k=v}`; an unknown pass or option is a `StrataError`."""
    try:
        return PassPipeline.parse_spec(available_passes(), spec, callback)
    # ArgSpecParseError derives from BaseException, so name it.
    except (Exception, ArgSpecParseError) as err:
        message = str(err).strip().splitlines()
        raise StrataError(f"error: bad pass pipeline '{spec}': {' '.join(message)}") from None
