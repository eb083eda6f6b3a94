"""
strata: an ML compiler on xDSL, as a Python library.

`import strata` gives the API of `strata.compiler.api`: `load` / `parse` a
model, `device` a machine, `compile` for a target and device (the cost report
as data), `run` it. The compiler's parts are the subpackages
`strata.compiler` (driver, CLI, frontend, execution, tuning, reports,
testing tools), `strata.dialects`, `strata.passes` and `strata.backends`.
"""

from strata.compiler.api import Compiled, Error, Model, compile, device, load, parse, run

__all__ = ["Compiled", "Error", "Model", "compile", "device", "load", "parse", "run"]
__version__ = "0.1.0"
