"""Prefill (a full forward over the prompt batch) at the Qwen2-0.5B shape.

    python -m launch.speed prefill [--batch 4 --length 256] [--no-compile]

Ours (one `jax.jit` forward, fp32 and bf16) against transformers' `Qwen2ForCausalLM`
with the same weights: eager attention, and `torch.compile` of the eager model.
Every contender returns the logits of every position (what training and scoring
need). Two phases, so that the bench shape fits ~8 GiB: ours fp32 against the peers,
then (peers freed) ours bf16 against ours fp32; bf16's ratio to transformers goes
through our fp32 time, measured in both. Targets: ours fp32 >= 1.0x transformers
eager; ours bf16 >= 1.5x transformers fp32 where the CPU has bf16 dot-product units.
"""

from __future__ import annotations

import argparse
import gc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, help="trunk layers (default: the shape's own)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile peer (its compilation takes minutes)")


def run(args: argparse.Namespace) -> dict:
    import jax
    import numpy as np
    import torch
    from flax import nnx

    from launch.speed.common import (
        block,
        has_bf16_units,
        interleaved,
        profile,
        profile_line,
        table,
    )
    from launch.speed.shapes import forward_flops, trunk_config
    from paras2s_jax.model import KimiAudio

    cfg = trunk_config(args.size, **({"num_layers": args.layers} if args.layers else {}))
    batch, length = (2, 16) if args.size == "minute" else (args.batch, args.length)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, length)).astype(np.int32)
    ours = KimiAudio(cfg, rngs=nnx.Rngs(0))
    forward = nnx.jit(lambda m, t: m(t).text_logits)
    on_cpu = jax.default_backend() == "cpu"
    torch_device = "cpu" if on_cpu else ("cuda" if torch.cuda.is_available() else None)
    fp32 = "ours fp32 (jit)"
    contenders = {fp32: lambda: block(forward(ours, ids))}
    if torch_device is None:
        print("transformers peers skipped: this torch build has no CUDA")
    else:
        contenders.update(_peers(ours, ids, torch_device, not args.no_compile, forward))
    # 1st phase: ours fp32 against the peers.
    t1 = interleaved(contenders, args.repeats)
    busy = profile(contenders[fp32], args.profile)
    del contenders
    gc.collect()
    # 2nd phase, the peers freed (memory): bf16 against fp32. The same seed gives the
    # same weights, rounded to bf16.
    ours16 = KimiAudio(cfg.replace(dtype="bfloat16", param_dtype="bfloat16"), rngs=nnx.Rngs(0))
    t2 = interleaved({fp32: lambda: block(forward(ours, ids)),
                      "ours bf16 (jit)": lambda: block(forward(ours16, ids))}, args.repeats)
    flops = forward_flops(cfg, batch, length)
    tokens = batch * length
    print(f"prefill, batch {batch} x {length}, hidden {cfg.hidden_size}, {cfg.num_layers} layers,"
          f" vocab {cfg.vocab_size}; {flops / 1e12:.2f} TFLOP; medians of {args.repeats} "
          f"interleaved rounds; the 2nd phase's ratios to transformers go through our fp32 "
          f"time, measured in both phases")
    base = "transformers eager fp32"
    has_base = base in t1.samples
    rows = []
    # Each contender as (median wall s, median CPU s) in 1st-phase units.
    scale = t1.median(fp32) / t2.median(fp32)
    scale_cpu = t1.median_cpu(fp32) / t2.median_cpu(fp32)
    timed = {name: (t1.median(name), t1.median_cpu(name), "1st") for name in t1.samples}
    timed["ours bf16 (jit)"] = (t2.median("ours bf16 (jit)") * scale,
                                t2.median_cpu("ours bf16 (jit)") * scale_cpu, "2nd")
    for name, (m, c, phase) in timed.items():
        vs = timed[base][0] / m if has_base else float("nan")
        vs_cpu = timed[base][1] / c if has_base else float("nan")
        rows.append([name, phase, m * 1e3, tokens / m, flops / m / 1e9, vs, vs_cpu])
    print(table(["", "phase", "ms", "tokens/s", "GFLOP/s", "x transformers eager fp32",
                 "same, in CPU time"], rows))
    print(f"ours bf16 / ours fp32 speed in the same rounds: "
          f"{t2.median(fp32) / t2.median('ours bf16 (jit)'):.2f}x")
    print(f"where our fp32 time goes (jax.profiler): {profile_line(busy)}")
    results = {"timings": t1.as_dict(), "timings_bf16_phase": t2.as_dict(), "flops": flops,
               "tokens": tokens, "bf16_units": has_bf16_units(), "profile_ours_fp32": busy}
    if has_base:
        r32 = timed[base][0] / timed[fp32][0]
        r16 = timed[base][0] / timed["ours bf16 (jit)"][0]
        results.update(ratio_fp32=r32, ratio_bf16=r16)
        print(f"target ours fp32 >= 1.0x transformers eager: {r32:.2f}x "
              f"({'met' if r32 >= 1.0 else 'NOT met'})")
        print(f"target ours bf16 >= 1.5x transformers fp32 (bf16 units: "
              f"{'yes' if has_bf16_units() else 'no'}): {r16:.2f}x "
              f"({'met' if r16 >= 1.5 else 'NOT met'})")
    return results


def _peers(ours, ids, torch_device: str, compile_: bool, forward) -> dict:
    """transformers eager (and its `torch.compile`) with our weights, as timed callables;
    prints the largest logit difference from ours."""
    import numpy as np
    import torch

    from launch.speed.shapes import hf_peer

    tids = torch.tensor(ids, dtype=torch.long, device=torch_device)
    peers = {"transformers eager fp32": hf_peer(ours, "eager").to(torch_device)}
    if compile_:
        peers["transformers eager fp32 + torch.compile"] = torch.compile(
            peers["transformers eager fp32"])

    def call(module):
        def fn():
            with torch.inference_mode():
                out = module(tids).logits
            if torch_device == "cuda":
                torch.cuda.synchronize()
            return out
        return fn

    # Same computation: our logits against the eager peer's.
    with torch.inference_mode():
        ref = peers["transformers eager fp32"](tids).logits.float().cpu().numpy()
    diff = float(np.abs(np.asarray(forward(ours, ids)) - ref).max())
    del ref  # [B, L, V] float32: 0.6 GB at the bench shape
    print(f"max |logit ours - transformers| = {diff:.2e} (fp32)")
    return {name: call(m) for name, m in peers.items()}
