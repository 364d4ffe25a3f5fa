"""Prefill (a full forward over the prompt batch) at the Qwen2-0.5B shape.

    python -m launch.speed prefill [--batch 4 --length 256] [--no-compile]

Ours (one `jax.jit` forward, fp32 and bf16) against transformers' `Qwen2ForCausalLM`
with the same weights: eager attention, and `torch.compile` of the eager model.
Every contender returns the logits of every position (what training and scoring
need). Targets: ours fp32 >= 1.0x transformers eager; ours bf16 >= 1.5x transformers
fp32 where the CPU has bf16 dot-product units.
"""

from __future__ import annotations

import argparse


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
    from launch.speed.shapes import forward_flops, hf_peer, trunk_config
    from paras2s_jax.model import KimiAudio

    cfg = trunk_config(args.size, **({"num_layers": args.layers} if args.layers else {}))
    batch, length = (2, 16) if args.size == "minute" else (args.batch, args.length)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, length)).astype(np.int32)
    ours = KimiAudio(cfg, rngs=nnx.Rngs(0))
    # The same seed gives the same weights, rounded to bf16.
    ours16 = KimiAudio(cfg.replace(dtype="bfloat16", param_dtype="bfloat16"), rngs=nnx.Rngs(0))
    forward = nnx.jit(lambda m, t: m(t).text_logits)
    on_cpu = jax.default_backend() == "cpu"
    torch_device = "cpu" if on_cpu else ("cuda" if torch.cuda.is_available() else None)
    contenders = {"ours fp32 (jit)": lambda: block(forward(ours, ids)),
                  "ours bf16 (jit)": lambda: block(forward(ours16, ids))}
    peers = {}
    if torch_device is None:
        print("transformers peers skipped: this torch build has no CUDA")
    else:
        tids = torch.tensor(ids, dtype=torch.long, device=torch_device)
        peers["transformers eager fp32"] = hf_peer(ours, "eager").to(torch_device)
        if not args.no_compile:
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

        contenders.update({name: call(m) for name, m in peers.items()})
        # Same computation: our logits against the eager peer's.
        with torch.inference_mode():
            ref = peers["transformers eager fp32"](tids).logits.float().cpu().numpy()
        diff = float(np.abs(np.asarray(forward(ours, ids)) - ref).max())
        del ref  # [B, L, V] float32: 0.6 GB at the bench shape
        print(f"max |logit ours - transformers| = {diff:.2e} (fp32)")

    t = interleaved(contenders, args.repeats)
    busy = profile(contenders["ours fp32 (jit)"], args.profile)
    flops = forward_flops(cfg, batch, length)
    tokens = batch * length
    print(f"prefill, batch {batch} x {length}, hidden {cfg.hidden_size}, {cfg.num_layers} layers,"
          f" vocab {cfg.vocab_size}; {flops / 1e12:.2f} TFLOP; medians of {args.repeats} "
          f"interleaved rounds")
    base = "transformers eager fp32"
    rows = []
    for name in contenders:
        m = t.median(name)
        vs = t.median(base) / m if base in contenders else float("nan")
        vs_cpu = (t.median_cpu(base) / t.median_cpu(name)) if base in contenders else float("nan")
        rows.append([name, m * 1e3, tokens / m, flops / m / 1e9, vs, vs_cpu])
    print(table(["", "ms", "tokens/s", "GFLOP/s", "x transformers eager fp32",
                 "same, in CPU time"], rows))
    print(f"where our fp32 time goes (jax.profiler): {profile_line(busy)}")
    results = {"timings": t.as_dict(), "flops": flops, "tokens": tokens,
               "bf16_units": has_bf16_units(), "profile_ours_fp32": busy}
    if base in contenders:
        r32 = t.median(base) / t.median("ours fp32 (jit)")
        r16 = t.median(base) / t.median("ours bf16 (jit)")
        results.update(ratio_fp32=r32, ratio_bf16=r16)
        print(f"target ours fp32 >= 1.0x transformers eager: {r32:.2f}x "
              f"({'met' if r32 >= 1.0 else 'NOT met'})")
        print(f"target ours bf16 >= 1.5x transformers fp32 (bf16 units: "
              f"{'yes' if has_bf16_units() else 'no'}): {r16:.2f}x "
              f"({'met' if r16 >= 1.5 else 'NOT met'})")
    return results
