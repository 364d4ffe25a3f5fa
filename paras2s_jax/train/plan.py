"""Compiled memory plans: compile a stage's jitted functions abstractly and report them.

Each stage lists its real jitted functions with abstract, sharded arguments
(`jax.ShapeDtypeStruct`s carrying the `NamedSharding`s the stage assigns) as `Planned`
entries; `compile_plan` lowers and compiles one on the configured mesh (fake CPU
devices or real accelerators) without allocating anything, and reads
- per-device argument / output / temporary bytes (`memory_analysis`),
- XLA's FLOPs and bytes accessed (`cost_analysis`, loop bodies counted once),
- loop-aware matmul FLOPs and collective bytes from the optimised HLO (`hlo.analyse`),
compares the FLOPs with the model's k·N·tokens (k = 6 for a train step, 2 for a
forward), and estimates each function's time from what it compiled to (`Hardware`):
compute = the compiled matmul FLOPs at a fraction of the device's peak, communication =
the bytes each device sends in all its collectives over its link bandwidth; the
estimate is the larger of the two (overlapped), the bound their sum (not overlapped).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from paras2s_jax import sharding
from paras2s_jax.train.hlo import analyse

GB = 1e9


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What the time estimate assumes of each device (defaults: an H100 SXM)."""

    peak_flops: float = 989e12  # dense bf16 matmul peak, FLOP/s
    utilisation: float = 0.4  # fraction of the peak the compiled matmuls reach
    link_bytes_per_s: float = 450e9  # NVLink bandwidth one device sends at

    def describe(self) -> str:
        return (f"compute = compiled matmul FLOPs per device (loops multiplied out) at "
                f"{self.utilisation:g} x {self.peak_flops / 1e12:g} TFLOP/s; comm = bytes "
                f"each device sends in all collectives (ring over each replica group) at "
                f"{self.link_bytes_per_s / GB:g} GB/s; estimate = max(compute, comm) "
                f"(overlapped), bound = compute + comm (not overlapped)")


@dataclasses.dataclass
class Planned:
    """One jitted function of a stage with abstract arguments."""

    name: str
    fn: Any  # has .lower(*args): a `sharding.mesh_jit` or a jax.jit
    args: tuple
    tokens: int  # tokens it processes (rows x positions; decode steps for a rollout)
    flops_per_param_token: int  # 6: forward + backward; 2: forward only
    mesh: jax.sharding.Mesh | None = None  # context to lower a plain jax.jit in
    unknown_trip: int = 1  # trip count assumed for data-dependent loops
    static_kwargs: dict = dataclasses.field(default_factory=dict)  # e.g. a static config
    note: str = ""


@dataclasses.dataclass
class StagePlan:
    """A stage's planned functions and what the report needs about its model."""

    functions: list[Planned]
    matmul_params: int  # N of k·N·tokens
    mesh: jax.sharding.Mesh
    model_config: Any


@dataclasses.dataclass
class PlanRow:
    """What one compiled function costs per device."""

    name: str
    argument_gb: float
    output_gb: float
    alias_gb: float
    temp_gb: float
    xla_flops: float  # per device, loop bodies once
    bytes_accessed_gb: float  # per device, loop bodies once
    hlo_flops: float  # per device, loops multiplied out
    collectives_gb: dict[str, float]  # result sizes per kind, per device
    wire_gb: dict[str, float]  # bytes sent per kind, per device
    model_flops: float  # k * N * tokens, whole mesh
    compile_s: float
    note: str = ""

    @property
    def peak_gb(self) -> float:
        """Arguments + outputs not aliased to them + temporaries: the device's high mark."""
        return self.argument_gb + self.output_gb - self.alias_gb + self.temp_gb

    def compute_s(self, hw: Hardware) -> float:
        """Seconds of the compiled matmuls on one device."""
        return self.hlo_flops / (hw.peak_flops * hw.utilisation)

    def comm_s(self, hw: Hardware) -> float:
        """Seconds one device spends sending its collectives' bytes."""
        return sum(self.wire_gb.values()) * GB / hw.link_bytes_per_s


def matmul_params(params: nnx.State) -> int:
    """Parameters a token's forward multiplies by: all but the embedding table and
    the Whisper adaptor (which only runs on user-audio positions)."""
    total = 0
    for path, leaf in nnx.to_flat_state(params):
        names = [str(p) for p in path]
        if "embed_tokens" in names or "vq_adaptor" in names:
            continue
        total += math.prod(leaf.shape)
    return total


def abstract(shape: tuple[int, ...], dtype, mesh: jax.sharding.Mesh,
             names: tuple[str | None, ...] | None = None) -> jax.ShapeDtypeStruct:
    """A ShapeDtypeStruct laid out by activation rules (default: batch on axis 0)."""
    if names is None:
        names = ("activation_batch",) + (None,) * (len(shape) - 1)
    spec = sharding.logical_to_spec(names, sharding.ACTIVATION_RULES, shape, mesh)
    return jax.ShapeDtypeStruct(shape, dtype, sharding=jax.sharding.NamedSharding(mesh, spec))


def abstract_batch(spec: dict[str, tuple], mesh: jax.sharding.Mesh
                   ) -> dict[str, jax.ShapeDtypeStruct]:
    """{key: (shape, dtype[, logical names])} (`SpeechPolicy.batch_spec`) -> global
    batch arrays laid out by their names (default: split over the batch axes)."""
    return {k: abstract(*entry, mesh) if len(entry) == 2 else
            abstract(entry[0], entry[1], mesh, entry[2]) for k, entry in spec.items()}


def abstract_key(mesh: jax.sharding.Mesh) -> jax.ShapeDtypeStruct:
    """A replicated new-style PRNG key."""
    key = jax.eval_shape(lambda: jax.random.key(0))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated)


def compile_plan(p: Planned, n_params: int) -> PlanRow:
    """Lower and compile `p` abstractly; its per-device costs."""
    t0 = time.perf_counter()
    if p.mesh is not None:
        with jax.set_mesh(p.mesh):
            compiled = p.fn.lower(*p.args, **p.static_kwargs).compile()
    else:
        compiled = p.fn.lower(*p.args, **p.static_kwargs).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list):  # older jax: one dict per program
        cost = cost[0] if cost else {}
    stats = analyse(compiled.as_text(), p.unknown_trip)
    return PlanRow(
        name=p.name,
        argument_gb=mem.argument_size_in_bytes / GB,
        output_gb=mem.output_size_in_bytes / GB,
        alias_gb=mem.alias_size_in_bytes / GB,
        temp_gb=mem.temp_size_in_bytes / GB,
        xla_flops=float(cost.get("flops", 0.0)),
        bytes_accessed_gb=float(cost.get("bytes accessed", 0.0)) / GB,
        hlo_flops=stats.dot_flops,
        collectives_gb={k: v / GB for k, v in stats.collective_bytes.items() if v},
        wire_gb={k: v / GB for k, v in stats.wire_bytes.items() if v},
        model_flops=float(p.flops_per_param_token) * n_params * p.tokens,
        compile_s=seconds,
        note=p.note,
    )


def format_rows(rows: list[PlanRow], devices: int, budget_gb: float,
                hw: Hardware = Hardware()) -> str:
    """The plan as a Markdown table (per device), then the function notes."""
    head = ("| function | args GB | out GB | temp GB | peak GB | compiled TFLOP | "
            "k·N·tokens TFLOP (all devices) | compiled/model | sent GB by collective | "
            "compute s | comm s | estimate s | bound s | verdict |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        ratio = r.hlo_flops * devices / r.model_flops if r.model_flops else float("nan")
        sent = ", ".join(f"{k} {v:.0f}" for k, v in r.wire_gb.items()) or "none"
        compute, comm = r.compute_s(hw), r.comm_s(hw)
        verdict = "fits" if r.peak_gb <= budget_gb else f"OVER {budget_gb:g} GB"
        lines.append(
            f"| {r.name} | {r.argument_gb:.1f} | {r.output_gb:.1f} | {r.temp_gb:.1f} | "
            f"{r.peak_gb:.1f} | {r.hlo_flops / 1e12:.0f} | {r.model_flops / 1e12:.0f} | "
            f"{ratio:.2f} | {sent} | {compute:.2f} | {comm:.2f} | {max(compute, comm):.2f} | "
            f"{compute + comm:.2f} | {verdict} |")
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + notes)


def run_plan(planned: list[Planned], n_params: int,
             report: Callable[[PlanRow], None] = lambda r: None) -> list[PlanRow]:
    """Compile every function in turn (calling `report` after each: they are slow)."""
    rows = []
    for p in planned:
        row = compile_plan(p, n_params)
        report(row)
        rows.append(row)
    return rows
