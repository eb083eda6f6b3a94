"""
The device options every command shares (`--device`, `--device-file`,
`--spec`), resolved once into the `DeviceSpec` the driver records on the
module; every pass, the tuner and the cost model then read that one device.
"""

from __future__ import annotations

import argparse

from xdsl.dialects.builtin import ModuleOp

from strata.compiler.diagnostics import StrataError
from strata.dialects import device as specs
from strata.dialects.device import DeviceSpec


def nonempty(text: str) -> str:
    """A device name or spec file path: an empty one would silently mean "no device option"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a device name (see `strata targets`) or a spec file, not ''")
    return text


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", metavar="NAME", type=nonempty, help="device to compile for and cost on (see `strata targets`;"
                        " `host`: this machine's CPU, measured on first use; default: the device a dump records, else"
                        " per target h100, tpu-v4, groq-lpu, xeon-spr-2c)")
    parser.add_argument("--device-file", metavar="FILE", type=nonempty,
                        help="the device described by this spec file (.toml)")
    parser.add_argument("--spec", metavar="KEY=VALUE", action="append", default=[],
                        help="override one figure of the device spec, e.g. --spec smem_per_block_bytes=49152"
                        " (repeatable); tiling, layouts, chip placement, tuning and costing all see it")


def named_device(name: str) -> DeviceSpec:
    """A shipped device, a spec file, or `host`: this machine's CPU, measured on it (`compiler/host.py`)."""
    from strata.compiler import host

    return host.host_device() if name == host.HOST else specs.load_device(name)


def _given(args) -> bool:
    return bool(args.device or args.device_file or args.spec)


def chosen_devices(args, targets: list[str], base: dict | None = None) -> dict[str, DeviceSpec]:
    """
    The devices the user chose per target: --device or --device-file, with
    --spec overrides (applied to `base[target]`, else the target's default
    device, when no device is named). Empty when no device option is given:
    the driver then uses the device a dump records, else the default.
    Resolved once, here; every pass, the tuner and the cost model read it.
    """
    if not _given(args):
        return {}
    if args.device and args.device_file:
        raise StrataError("error: give --device or --device-file, not both")
    try:
        chosen = {t: (base or {}).get(t) or specs.default_device(t) for t in targets}
        if args.device or args.device_file:
            given = args.device or args.device_file
            device = named_device(given) if args.device else specs.load_device_file(given)
            if device.target not in chosen:
                raise StrataError(f"error: device '{device.name}' is a {device.target} device, not one for"
                                  f" --target {','.join(targets)}")
            chosen = {device.target: device} if len(targets) == 1 else {**chosen, device.target: device}
        if args.spec:
            keyed = {item.partition("=")[0] for item in args.spec}
            for target, device in chosen.items():
                mine = [item for item in args.spec if item.partition("=")[0] in device]
                if mine or len(chosen) == 1:
                    chosen[target] = specs.with_overrides(device, mine if len(chosen) > 1 else args.spec)
            if len(chosen) > 1 and not any(k in d for k in keyed for d in chosen.values()):
                raise StrataError(f"error: --spec {', '.join(sorted(keyed))}: no device has such a key")
    except specs.SpecError as err:
        raise StrataError(f"error: {err}") from None
    return chosen


def recorded_device(module: ModuleOp) -> dict[str, DeviceSpec]:
    """The device a dump records, by target (for --spec overrides of it)."""
    try:
        recorded = specs.module_device(module)
    except specs.SpecError as err:
        raise StrataError(f"error: {err}") from None
    return {recorded.target: recorded} if recorded else {}




def opt_device(args, module: ModuleOp) -> DeviceSpec | None:
    """
    `strata opt`'s device: the named one (its target is the device's), or
    `--spec` applied to the device the input records; None without options.
    """
    if not _given(args):
        return None
    recorded = recorded_device(module)
    named = args.device or args.device_file
    if not named and not recorded:
        raise StrataError("error: --spec changes a device: name one with --device, or give a dump that records one")
    if named:
        try:
            target = (specs.load_device(named) if args.device else specs.load_device_file(named)).target
        except specs.SpecError as err:
            raise StrataError(f"error: {err}") from None
    else:
        target = next(iter(recorded))
    return chosen_devices(args, [target], recorded)[target]
