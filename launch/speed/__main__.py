"""Command line of the speed suites: `python -m launch.speed SUITE ...`."""

from __future__ import annotations

import argparse
import sys

from launch.speed import registry as load_registry
from launch.speed.common import machine_info, reexec_with_tcmalloc, write_result
from launch.speed.shapes import SIZES


def main(argv: list[str] | None = None, command_line: bool = False) -> dict:
    """Run one suite; returns what it wrote to JSON. From the command line, the process
    first restarts on tcmalloc where it is installed (`--allocator system` keeps malloc)."""
    registry = load_registry()
    parser = argparse.ArgumentParser(prog="python -m launch.speed",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="suite", required=True)
    for name, module in registry.items():
        p = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0],
                           description=module.__doc__)
        p.add_argument("--size", choices=SIZES, default="bench",
                       help="minute: tiny shapes (seconds); bench: the published CPU shapes; "
                            "device: 7B-shaped layers on an accelerator")
        p.add_argument("--device", action="store_true",
                       help="run on the accelerator with 7B-shaped layers (= --size device)")
        p.add_argument("--repeats", type=int, default=3, help="timed rounds (medians kept)")
        p.add_argument("--out", help="JSON result path (default runs/speed/SUITE-TIME.json)")
        p.add_argument("--allocator", choices=("tcmalloc", "system"), default="tcmalloc",
                       help="memory allocator of the process (both contenders): tcmalloc "
                            "where installed (libtcmalloc-minimal4), else the system's")
        p.add_argument("--profile", metavar="DIR",
                       help="keep the jax.profiler trace of our side here (TensorBoard)")
        module.add_arguments(p)
    args = parser.parse_args(argv)
    if command_line and args.allocator == "tcmalloc":
        reexec_with_tcmalloc(list(argv or []))
    if args.device:
        args.size = "device"
    import jax

    if args.size == "device" and jax.default_backend() == "cpu":
        parser.error("--device needs an accelerator; JAX sees only CPU devices")
    machine = machine_info()
    print(f"# {args.suite} | {machine['cpu_model']}, {machine['cores']} cores, "
          f"load {machine['load_average'][0]:.1f} | jax {machine['versions']['jax']} "
          f"({machine['jax_backend']}: {len(machine['jax_devices'])} devices) | torch "
          f"{machine['versions']['torch']} | {machine['allocator']} allocator | size "
          f"{args.size}", flush=True)
    results = registry[args.suite].run(args)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    path = write_result(args.out, args.suite, settings, results, machine)
    print(f"wrote {path}")
    return {"settings": settings, "results": results, "machine": machine}


if __name__ == "__main__":
    main(sys.argv[1:], command_line=True)
