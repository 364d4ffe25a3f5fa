"""KV-cache decoding at batch 1 and 8 against its physical floor and HF `generate`.

    python -m launch.speed decode [--prompt 32 --new-tokens 64 --batches 1,8]

Greedy, Qwen2-0.5B shape. Three phases, so that at most ~6 GiB of weights are alive
at a time: (1) our sampler on the text-only trunk (`sampling.generate`, prefill +
`lax.while_loop` in one jit) in fp32 against transformers' `generate` with the same
weights; (2) the peer freed, our trunk with bf16 weights (float32 accumulation)
against fp32; (3) the trunk freed, our dual-stream sampler with Kimi-Audio's audio
branch (`--mimo-layers`, 6 layers + audio head; 0 skips the phase), whose extra cost
per step is shown on its own. A step's time is
(time(N new tokens) - time(1 new token)) / (N - 1), so prefill is not counted.

The floor of a step is the larger of two measured terms: reading every matmul weight
and the KV cache once (bytes / the bandwidth of a jitted fp32 matrix-vector product
over a matrix much larger than the caches), and its matmul FLOPs / the machine's
jitted-matmul peak. At batch 1 the byte term dominates; at batch 8 in fp32 a step does
~4 FLOP per weight byte, near this kind of CPU's ridge point, so both terms matter.
Each step is shown as a fraction of its own floor, next to the raw targets: batch-8
step <= 1.5x the batch-1 step; batch-1 step >= 0.85 of the weight-read roofline.
"""

from __future__ import annotations

import argparse
import gc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, help="trunk layers (default: the shape's own)")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--mimo-layers", type=int, default=6, help="audio branch depth")


def weight_bandwidth(size: str, repeats: int) -> float:
    """Bytes/s of a jitted fp32 matrix-vector product (the weight-read bandwidth)."""
    import jax
    import jax.numpy as jnp

    from launch.speed.common import block, interleaved

    rows = 512 if size == "minute" else 16384  # 16384 x 8192 x 4 B = 512 MiB
    w = jnp.ones((rows, 8192), jnp.float32)
    x = jnp.ones((8192,), jnp.float32)
    matvec = jax.jit(lambda w, x: w @ x)
    t = interleaved({"matvec": lambda: block(matvec(w, x))}, max(repeats, 5))
    return w.nbytes / t.median("matvec")


def _matmul(hidden: int, width: int, batch: int):
    """One decode-shaped matmul: [batch, hidden] x [hidden, width] (the MLP's size)."""
    import jax
    import jax.numpy as jnp

    from launch.speed.common import block

    w = jnp.ones((hidden, width), jnp.float32)
    x = jnp.ones((batch, hidden), jnp.float32)
    mm = jax.jit(lambda x, w: x @ w)
    return lambda: block(mm(x, w))


def _ours(model, ids, steps: int, output_type: str):
    import jax
    import numpy as np

    from launch.speed.common import block
    from paras2s_jax.sampling import SamplingConfig, generate

    sp = model.config.special
    prompts = {"text": ids, "audio": np.full_like(ids, sp.pad),
               "attention_mask": np.ones(ids.shape, bool)}
    sc = SamplingConfig(max_new_tokens=steps, text_temperature=0.0, audio_temperature=0.0,
                        output_type=output_type, prompt_bucket=ids.shape[1])
    return lambda: block(generate(model, prompts, jax.random.key(0), sc))


def _hf(peer, ids, steps: int):
    import torch

    tids = torch.tensor(ids, dtype=torch.long)
    mask = torch.ones_like(tids)

    def fn():
        with torch.inference_mode():
            return peer.generate(input_ids=tids, attention_mask=mask, max_new_tokens=steps,
                                 do_sample=False, pad_token_id=0)
    return fn


def _floor(cfg, batch: int, context: int, bytes_per: int, bandwidth: float,
           peak: float) -> tuple[float, float]:
    """(weight-read ms, matmul-peak ms) of one decode step; its floor is the larger."""
    from launch.speed.shapes import decode_bytes, decode_flops

    return (decode_bytes(cfg, batch, context, bytes_per) / bandwidth * 1e3,
            decode_flops(cfg, batch, context) / peak * 1e3)


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    from flax import nnx

    from launch.speed.common import interleaved, matmul_peak, profile, profile_line, table
    from launch.speed.shapes import dual_config, hf_peer, trunk_config
    from paras2s_jax.model import KimiAudio

    minute = args.size == "minute"
    prompt, steps = (8, 4) if minute else (args.prompt, args.new_tokens)
    batches = [int(b) for b in args.batches.split(",")]
    cfg = trunk_config(args.size, **({"num_layers": args.layers} if args.layers else {}))
    rng = np.random.default_rng(0)
    ids = {b: rng.integers(0, cfg.text_vocab_size - 512, (b, prompt)).astype(np.int32)
           for b in batches}
    trunk = KimiAudio(cfg, rngs=nnx.Rngs(0))
    peer = hf_peer(trunk, "sdpa")

    # Same greedy tokens on both sides (the comparison is like for like).
    out = np.asarray(_ours(trunk, ids[batches[0]], steps, "text")().text)
    theirs = _hf(peer, ids[batches[0]], steps)()[:, prompt:].numpy()
    agree = float(np.mean(out == theirs))
    print(f"greedy tokens equal to transformers': {agree:.1%}")

    peak_size = 256 if minute else 2048
    peaks = {"fp32": matmul_peak(peak_size, "float32"), "bf16": matmul_peak(peak_size, "bfloat16")}
    contenders = {f"matmul peak {k}": fn for k, (fn, _) in peaks.items()}
    for b in batches:
        for n in (steps, 1):
            contenders[f"ours trunk b{b} n{n}"] = _ours(trunk, ids[b], n, "text")
            contenders[f"transformers generate b{b} n{n}"] = _hf(peer, ids[b], n)
        contenders[f"matmul b{b}"] = _matmul(cfg.hidden_size, 3 * cfg.intermediate_size, b)
    t1 = interleaved(contenders, args.repeats)
    busy = {b: profile(_ours(trunk, ids[b], steps, "text"),
                       args.profile and f"{args.profile}/decode_b{b}") for b in batches}
    peak = {k: flops / t1.median(f"matmul peak {k}") for k, (_, flops) in peaks.items()}
    del peer, contenders
    gc.collect()
    bandwidth = weight_bandwidth(args.size, args.repeats)  # its 512 MiB after the peer's

    # 2nd phase: bf16 weights against fp32, in the same rounds.
    # The same seed gives the same weights, rounded to bf16.
    trunk16 = KimiAudio(cfg.replace(dtype="bfloat16", param_dtype="bfloat16"), rngs=nnx.Rngs(0))
    out16 = np.asarray(_ours(trunk16, ids[batches[0]], steps, "text")().text)
    agree16 = float(np.mean(out16 == out))
    print(f"bf16 greedy tokens equal to fp32's: {agree16:.1%} (rounding may flip near-ties)")
    contenders = {}
    for b in batches:
        for n in (steps, 1):
            contenders[f"ours trunk b{b} n{n}"] = _ours(trunk, ids[b], n, "text")
            contenders[f"ours trunk bf16 b{b} n{n}"] = _ours(trunk16, ids[b], n, "text")
    t2 = interleaved(contenders, args.repeats)
    del trunk16, contenders
    gc.collect()

    # 3rd phase, the fp32 trunk freed too (memory): the dual-stream sampler alone; the
    # audio branch's cost is its step minus the trunk's step of the 2nd phase.
    t3, dual_cfg = None, None
    if args.mimo_layers:
        del trunk
        gc.collect()
        dual = KimiAudio(dual_config(args.size, args.mimo_layers, num_layers=cfg.num_layers),
                         rngs=nnx.Rngs(0))
        dual_cfg = dual.config
        t3 = interleaved({f"ours dual-stream b{b} n{n}": _ours(dual, ids[b], n, "both")
                          for b in batches for n in (steps, 1)}, args.repeats)
        del dual

    def step_ms(t, name, b):
        return (t.median(f"{name} b{b} n{steps}") - t.median(f"{name} b{b} n1")) / (steps - 1) * 1e3

    context = prompt + steps // 2
    rows, results = [], {"bandwidth_bytes_per_s": bandwidth, "matmul_peak_flops_per_s": peak,
                         "steps": steps, "prompt": prompt, "greedy_agreement": agree,
                         "bf16_greedy_agreement_with_fp32": agree16,
                         "phase1": t1.as_dict(), "phase2": t2.as_dict(),
                         "phase3": t3 and t3.as_dict()}
    for b in batches:
        contenders = [("ours trunk", t1, "ours trunk", cfg, "fp32"),
                      ("transformers generate", t1, "transformers generate", cfg, "fp32"),
                      ("ours trunk bf16 (2nd phase)", t2, "ours trunk bf16", cfg, "bf16")]
        if t3:
            contenders.append(("ours dual-stream (3rd phase)", t3, "ours dual-stream",
                               dual_cfg, "fp32"))
        for label, t, name, model_cfg, kind in contenders:
            ms = step_ms(t, name, b)
            read, compute = _floor(model_cfg, b, context, 2 if kind == "bf16" else 4,
                                   bandwidth, peak[kind])
            floor = max(read, compute)
            rows.append([label, b, ms, b / ms * 1e3, read, compute, floor / ms,
                         b * steps / t.median(f"{name} b{b} n{steps}")])
            results[f"{name} b{b}"] = {"step_ms": ms, "roofline_ms": read,
                                       "matmul_peak_ms": compute, "floor_fraction": floor / ms}
        if t3:
            branch = step_ms(t3, "ours dual-stream", b) - step_ms(t2, "ours trunk", b)
            results[f"audio branch b{b}"] = {"step_ms": branch}
            rows.append(["audio branch alone (3rd - 2nd phase)", b, branch, "", "", "", "",
                         ""])
    print(f"decode, greedy, prompt {prompt}, {steps} new tokens, hidden {cfg.hidden_size}, "
          f"{cfg.num_layers} layers, vocab {cfg.vocab_size}; weight-read bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s, matmul peak {peak['fp32'] / 1e9:.0f} GFLOP/s fp32, "
          f"{peak['bf16'] / 1e9:.0f} bf16; medians of {args.repeats} interleaved rounds")
    print(table(["", "batch", "ms/step", "decode tok/s", "weight-read ms", "matmul-peak ms",
                 "of floor", "tok/s incl. prefill"], rows))
    print("floor = max(weight-read ms, matmul-peak ms): the step's physical limit")
    for b in batches:
        results[f"profile ours trunk b{b}"] = busy[b]
        print(f"where our batch-{b} decode time goes (jax.profiler): {profile_line(busy[b])}")
    if 1 in batches and 8 in batches:
        _targets(results, t1, t2, step_ms, cfg)
    for b in batches:
        results[f"ratio_vs_transformers_b{b}"] = (step_ms(t1, "transformers generate", b)
                                                 / step_ms(t1, "ours trunk", b))
        print(f"ours trunk / transformers step speed, batch {b}: "
              f"{results[f'ratio_vs_transformers_b{b}']:.2f}x")
    return results


def _targets(results: dict, t1, t2, step_ms, cfg) -> None:
    """Print the issue's raw targets (met / not met) and the batch-8 ratios."""
    kernel = t1.median("matmul b8") / t1.median("matmul b1")
    results["matmul_ratio_b8_b1"] = kernel
    print(f"one decode-shaped matmul [b, {cfg.hidden_size}] x [{cfg.hidden_size}, "
          f"{3 * cfg.intermediate_size}]: batch 8 costs {kernel:.2f}x batch 1")
    r = step_ms(t1, "ours trunk", 8) / step_ms(t1, "ours trunk", 1)
    r16 = step_ms(t2, "ours trunk bf16", 8) / step_ms(t2, "ours trunk bf16", 1)
    frac = results["ours trunk b1"]["roofline_ms"] / results["ours trunk b1"]["step_ms"]
    peer_r = step_ms(t1, "transformers generate", 8) / step_ms(t1, "transformers generate", 1)
    b8 = results["ours trunk b8"]
    floor_r = max(b8["roofline_ms"], b8["matmul_peak_ms"]) / results["ours trunk b1"]["roofline_ms"]
    results.update(step_ratio_b8_b1=r, step_ratio_b8_b1_bf16=r16, roofline_fraction_b1=frac,
                   peer_step_ratio=peer_r, floor_ratio_b8_b1=floor_r)
    print(f"target batch-8 step <= 1.5x batch-1 step: {r:.2f}x "
          f"({'met' if r <= 1.5 else 'NOT met'}; transformers {peer_r:.2f}x, ours bf16 "
          f"{r16:.2f}x; the floors' own ratio is {floor_r:.2f}x)")
    print(f"target batch-1 step >= 0.85 of roofline: {frac:.2f} "
          f"({'met' if frac >= 0.85 else 'NOT met'})")
