"""What every speed suite shares: machine facts, interleaved timing, JSON results.

Timings on a shared machine are noisy, so each comparison runs its contenders
round-robin (A, B, C, A, B, C, ...) in one process and reports medians: a load spike
hits every contender alike, and the printed ratios are what the suites are judged on.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers", "trl",
             "accelerate")
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU feature flags among those that matter for matmul speed."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split()) & set(_CPU_FLAGS)
    except OSError:
        pass
    return set()


def has_bf16_units() -> bool:
    """True when the CPU has native bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


TCMALLOC = "libtcmalloc_minimal.so.4"  # Debian/Ubuntu: apt-get install libtcmalloc-minimal4


def allocator_in_use() -> str:
    """"tcmalloc" if this process runs on tcmalloc (LD_PRELOAD), else "system"."""
    try:
        with open("/proc/self/maps") as f:
            return "tcmalloc" if "tcmalloc" in f.read() else "system"
    except OSError:
        return "system"


def reexec_with_tcmalloc(argv: list[str]) -> None:
    """Restart this command with tcmalloc preloaded, if it is installed and not in use.

    Both contenders of a suite share the process, so both get it. With glibc's malloc,
    every buffer over 32 MB is a fresh mmap whose pages fault in on first touch; on this
    project's 2-core CPU machines that was ~18% of a prefill's CPU time (system time)
    and made JAX's timings swing by 20% between calls."""
    import ctypes.util

    if allocator_in_use() == "tcmalloc":
        return
    found = ctypes.util.find_library("tcmalloc_minimal")
    preload = os.environ.get("LD_PRELOAD", "")
    if not found or found in preload.split():  # missing, or preloaded and still not in use
        print(f"# tcmalloc not found or not loadable ({TCMALLOC}): measuring on the system "
              "allocator")
        return
    env = dict(os.environ, LD_PRELOAD=" ".join(filter(None, [found, preload])))
    os.execve(sys.executable, [sys.executable, "-m", "launch.speed", *argv], env)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, load, package versions and JAX devices."""
    import jax

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": sorted(cpu_flags()),
        "cores": len(os.sched_getaffinity(0)),
        "memory_bytes": mem,
        "load_average": os.getloadavg(),  # other users' work on a shared machine
        "python": platform.python_version(),
        "versions": versions,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "allocator": allocator_in_use(),
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def block(x: Any) -> Any:
    """Wait for JAX arrays (any pytree) so the clock measures the computation."""
    import jax

    return jax.block_until_ready(x)


@dataclasses.dataclass
class Timings:
    """Seconds per call of each contender, all samples kept: wall clock, and this
    process's CPU time (all its threads), which other users' load barely changes."""

    samples: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def median_cpu(self, name: str) -> float:
        return statistics.median(self.cpu[name])

    def spread(self, name: str) -> float:
        """(max - min) / median: how noisy this contender's samples were."""
        s = self.samples[name]
        return (max(s) - min(s)) / statistics.median(s)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {k: {"median_s": self.median(k), "spread": self.spread(k), "samples_s": v,
                    "median_cpu_s": self.median_cpu(k), "cpu_samples_s": self.cpu[k]}
                for k, v in self.samples.items()}


def interleaved(contenders: Mapping[str, Callable[[], Any]], repeats: int,
                warmup: int = 1) -> Timings:
    """Time each zero-argument callable `repeats` times, round-robin, after `warmup` calls.

    Callables must block until their work is done (see `block`).
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return Timings(samples, cpu)


def matmul_peak(size: int, dtype: str) -> tuple[Callable[[], Any], float]:
    """(callable, FLOPs per call) of a jitted square matmul: the attainable peak. 16-bit
    inputs accumulate in float32, as the model's own products do."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    mm = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    return (lambda: block(mm(a, b))), 2.0 * size**3


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (docs/speed.md pastes it as printed)."""
    def fmt(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(path: str | os.PathLike | None, suite: str, settings: Mapping[str, Any],
                 results: Mapping[str, Any], machine: Mapping[str, Any]) -> Path:
    """Write {"suite", "settings", "machine", "results"} as JSON; returns the path."""
    if path is None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        path = Path("runs/speed") / f"{suite}-{stamp}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"suite": suite, "settings": dict(settings),
                                "machine": dict(machine), "results": dict(results)},
                               indent=2, default=str))
    return path


def _category(op: str) -> str | None:
    """Which kind of work an XLA runtime event is (None: bookkeeping, not counted)."""
    if op.startswith(("end: ", "ThreadpoolListener", "ThunkExecutor", "$", "PjitFunction")):
        return None
    if any(k in op for k in ("dot", "ynn", "xnn", "onednn", "gemm", "matmul", "cublas")):
        return "matmul"
    if "copy" in op or "transpose" in op:
        return "copy/transpose"
    if "dynamic-update-slice" in op or "dynamic_update_slice" in op:
        return "cache update"
    if "reduce" in op or "sort" in op or "top" in op:
        return "reduce/sort"
    return "elementwise fusion"


def profile(fn: Callable[[], Any], directory: str | None = None) -> dict[str, float]:
    """Trace one call of `fn` with `jax.profiler` and return busy milliseconds per kind
    of XLA work (matmul, elementwise fusion, copies, ...) summed over the runtime's
    threads. With `directory`, the trace stays there for TensorBoard's profile tab."""
    import glob

    import jax
    from jax.profiler import ProfileData

    with tempfile.TemporaryDirectory() as tmp:
        target = directory or tmp
        with jax.profiler.trace(target):
            fn()
        path = max(glob.glob(f"{target}/**/*.xplane.pb", recursive=True), key=os.path.getmtime)
        data = ProfileData.from_file(path)
    busy: dict[str, float] = defaultdict(float)
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                kind = _category(event.name)
                if kind:
                    busy[kind] += event.duration_ns / 1e6
    return dict(sorted(busy.items(), key=lambda kv: -kv[1]))


def profile_line(busy: Mapping[str, float]) -> str:
    """'matmul 71% · elementwise fusion 20% · ...' of a `profile` result."""
    total = sum(busy.values()) or 1.0
    return " · ".join(f"{k} {v / total:.0%}" for k, v in busy.items())
