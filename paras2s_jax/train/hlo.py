"""What a compiled program does per device, read from its optimised HLO text.

XLA's `cost_analysis()` counts the body of a loop once, but a step spends most of its
time in loops (gradient accumulation, chunked heads, the decode loop). This walks the
module's call graph instead, multiplying every computation by the trip count of the
loops around it (XLA records `known_trip_count` on the `while` ops that `lax.scan`
becomes; a data-dependent loop counts `unknown_trip` times), and sums
- matmul FLOPs: 2 x output elements x contracted size of every `dot`;
- collective bytes: the result size of every all-gather / all-reduce / reduce-scatter /
  all-to-all / collective-permute, per kind;
- wire bytes: what each device sends for them over a ring of its replica group's n
  devices (all-gather (n-1)/n x result, reduce-scatter (n-1) x result (its shard),
  all-reduce 2(n-1)/n x result, all-to-all (n-1)/n x result, collective-permute the
  result), per kind: the traffic a link's bandwidth divides.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
          "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
          "f8e4m3fn": 1, "f8e5m2": 1, "s4": 1, "u4": 1}
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([\d,]*)\]")
_HEADER = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
_CALLEES = re.compile(r"\b(calls|to_apply|body|condition|true_computation|false_computation)"
                      r"=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_PARTITIONS = re.compile(r"\bnum_partitions=(\d+)")
_IOTA_GROUPS = re.compile(r"replica_groups=\[(\d+),(\d+)\]<=")  # [groups, size]<=[...]
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}")
_LIST_GROUPS = re.compile(r"replica_groups=\{(\{[^}]*\})?")  # {{0,1},{2,3}} or {} (all)


@dataclasses.dataclass
class HloStats:
    """Per-device totals of one compiled program (loops multiplied out)."""

    dot_flops: float
    collective_bytes: dict[str, float]  # result sizes, per kind
    unknown_loops: int  # data-dependent loops, counted `unknown_trip` times
    wire_bytes: dict[str, float] = dataclasses.field(default_factory=dict)  # sent, per kind

    @property
    def total_collective_bytes(self) -> float:
        return sum(self.collective_bytes.values())

    @property
    def total_wire_bytes(self) -> float:
        return sum(self.wire_bytes.values())


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO result type: one array `f32[2,3]{1,0}` or a tuple of them."""
    return sum(_BYTES.get(dt, 4) * math.prod(int(d) for d in dims.split(",") if d)
               for dt, dims in _ARRAY.findall(shape))


def _dims(shape: str) -> list[int]:
    found = _ARRAY.search(shape)
    return [int(d) for d in found.group(2).split(",") if d] if found else []


def group_size(rest: str, partitions: int) -> int:
    """Devices in each replica group of a collective (`rest`: its operands and
    attributes); every partition when the groups are left empty."""
    iota = _IOTA_GROUPS.search(rest)
    if iota:
        return int(iota.group(2))
    mesh = _MESH_GROUPS.search(rest)
    if mesh:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", mesh.group(1)))
        return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", mesh.group(2)))
    listed = _LIST_GROUPS.search(rest)
    if listed and listed.group(1):
        return len([d for d in listed.group(1).strip("{}").split(",") if d.strip()])
    return partitions


def wire_bytes(kind: str, result_bytes: float, n: int) -> float:
    """Bytes one device sends for a collective of `result_bytes` over a ring of `n`."""
    if kind == "collective-permute":
        return result_bytes
    if n <= 1:
        return 0.0
    factor = {"all-gather": (n - 1) / n, "reduce-scatter": n - 1.0,
              "all-reduce": 2 * (n - 1) / n, "all-to-all": (n - 1) / n}[kind]
    return factor * result_bytes


def _split_instruction(line: str) -> tuple[str, str, str, str] | None:
    """(name, result type, opcode, rest) of `[ROOT] %name = TYPE opcode(rest`."""
    m = re.match(r"\s*(?:ROOT\s+)?%([\w.\-]+) = ", line)
    if not m:
        return None
    rest = line[m.end():]
    if rest.startswith("("):  # a tuple type: up to its closing parenthesis
        depth, end = 0, len(rest)
        for pos, ch in enumerate(rest):
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                end = pos + 1
                break
        shape, rest = rest[:end], rest[end:].lstrip()
    else:
        shape, _, rest = rest.partition(" ")
    opcode, _, rest = rest.partition("(")
    return m.group(1), shape, opcode.strip(), rest


def analyse(hlo_text: str, unknown_trip: int = 1) -> HloStats:
    """Loop-aware matmul FLOPs and collective bytes of an optimised HLO module."""
    shapes: dict[str, str] = {}
    own_flops: dict[str, float] = collections.defaultdict(float)
    own_coll: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    own_wire: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    found_partitions = _PARTITIONS.search(hlo_text)
    partitions = int(found_partitions.group(1)) if found_partitions else 1
    calls: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    pending_dots: list[tuple[str, str, str]] = []
    entry, current, unknown = None, None, 0
    for line in hlo_text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = header.group(1)
            if line.startswith("ENTRY"):
                entry = current
            continue
        parsed = _split_instruction(line) if current else None
        if parsed is None:
            continue
        name, shape, opcode, rest = parsed
        shapes[name] = shape
        base = opcode.removesuffix("-start")
        if base in COLLECTIVES and not opcode.endswith("-done"):
            # An async start's tuple holds operand and result (and context scalars): the
            # largest array is the result of a gather, the same size for the others.
            size = shape_bytes(shape) if not opcode.endswith("-start") else max(
                (shape_bytes(f"{dt}[{dims}]") for dt, dims in _ARRAY.findall(shape)),
                default=0)
            own_coll[current][base] += size
            own_wire[current][base] += wire_bytes(base, size, group_size(rest, partitions))
        if opcode == "dot":
            pending_dots.append((current, shape, rest))
        trip = 1
        if opcode == "while":
            found = _TRIP.search(rest)
            trip = int(found.group(1)) if found else unknown_trip
            unknown += found is None
        for kind, callee in _CALLEES.findall(rest):
            calls[current].append((callee, trip if kind in ("body", "condition") else 1))
        for group in _BRANCHES.findall(rest):
            calls[current] += [(c.strip().lstrip("%"), 1) for c in group.split(",") if c.strip()]
    for comp, shape, rest in pending_dots:
        operand = re.search(r"%([\w.\-]+)", rest)  # the lhs, typed or not
        lhs = operand.group(1) if operand else ""
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
        lhs_dims = _dims(shapes.get(lhs, ""))
        k = math.prod(lhs_dims[int(i)] for i in contracting.group(1).split(",") if i) if (
            contracting and lhs_dims) else 1
        own_flops[comp] += 2.0 * math.prod(_dims(shape)) * k

    memo: dict[str, tuple[float, collections.Counter, collections.Counter]] = {}

    def total(comp: str) -> tuple[float, collections.Counter, collections.Counter]:
        if comp in memo:
            return memo[comp]
        memo[comp] = (0.0, collections.Counter(), collections.Counter())  # guards cycles
        flops = own_flops[comp]
        coll, wire = collections.Counter(own_coll[comp]), collections.Counter(own_wire[comp])
        for callee, mult in calls[comp]:
            f, c, w = total(callee)
            flops += mult * f
            for key, value in c.items():
                coll[key] += mult * value
            for key, value in w.items():
                wire[key] += mult * value
        memo[comp] = (flops, coll, wire)
        return memo[comp]

    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    flops, coll, wire = total(entry)
    return HloStats(flops, {k: float(coll.get(k, 0)) for k in COLLECTIVES}, unknown,
                    {k: float(wire.get(k, 0)) for k in COLLECTIVES})
