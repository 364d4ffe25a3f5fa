"""Forward pass of a small trunk (hidden 256, 8 layers): jit vs transformers (sdpa).

    python -m launch.speed forward [--batch 4 --length 256]

A quick check of the whole path at a size where attention and norms weigh more than
at Qwen2-0.5B; `prefill` is the comparison at the real shape.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from flax import nnx

    from launch.speed.common import block, interleaved, table
    from launch.speed.shapes import hf_peer, trunk_config
    from paras2s_jax.model import KimiAudio

    small = dict(vocab_size=32768, hidden_size=256, intermediate_size=768, num_layers=8,
                 num_heads=8, num_kv_heads=2)
    cfg = trunk_config(args.size, **({} if args.size == "minute" else small))
    batch, length = (2, 16) if args.size == "minute" else (args.batch, args.length)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, length)).astype(np.int32)
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    peer = hf_peer(model, attn="sdpa")
    forward = nnx.jit(lambda m, t: m(t).text_logits)
    tids = torch.tensor(ids, dtype=torch.long)

    def theirs():
        with torch.inference_mode():
            peer(tids)

    t = interleaved({"ours": lambda: block(forward(model, ids)), "transformers": theirs},
                    args.repeats)
    tokens = batch * length
    rows = [[name, t.median(name) * 1e3, tokens / t.median(name), t.spread(name)]
            for name in ("ours", "transformers")]
    print(f"forward, batch {batch} x {length}, hidden {cfg.hidden_size}, {cfg.num_layers} "
          f"layers, fp32; medians of {args.repeats} interleaved rounds")
    print(table(["", "ms", "tokens/s", "spread"], rows))
    ratio = t.median("transformers") / t.median("ours")
    print(f"speed ratio ours/transformers: {ratio:.2f}x")
    return {"timings": t.as_dict(), "ratio_vs_transformers": ratio,
            "shape": {"batch": batch, "length": length, "hidden": cfg.hidden_size}}
