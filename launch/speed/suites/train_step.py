"""SFT train step: time, achieved FLOP/s and MFU against this machine's matmul peak.

    python -m launch.speed train-step [--batch 4 --length 256 --layers 6]

One jitted step of the library's SFT stage (`train.step.build_train_step` with
`train.sft.sft_loss`: forward and backward through the trunk, the audio branch and both
heads, global-norm clipping, AdamW, the NaN guard) on Qwen2-0.5B-shaped layers with a
16k vocabulary (the full 152k vocabulary's optimizer state does not fit this machine's
shared memory). Model FLOPs = 3 x forward (matmuls + attention at full S²;
rematerialised recomputation does not count). The peak is a jitted square fp32 matmul
timed in back-to-back calls before and after the variants, the faster of the two kept
(right after a multi-second step, single calls ran 1.5-4x slower on a quiet machine).
Variants (one after the other, so one optimizer state is in memory at a time): the
library's loss, whose heads run in sequence chunks
(`paras2s_jax.model.heads`, `head_chunk` positions at a time, so the [B, L, V] logits
never exist), and the plain loss over full float32 logits (`sft.token_ce`), each with
and without per-layer remat. Target: >= 50% of the peak (the library's loss, no remat).
"""

from __future__ import annotations

import argparse
import gc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6, help="trunk layers (+2 audio branch)")
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--head-chunk", type=int, default=128,
                        help="positions per chunk of the chunked loss (several per row)")


def full_logits_loss(model, batch, rng=None) -> dict:
    """SFT loss over full float32 [B, L, V] logits of both heads (no chunking): the
    reference the chunked loss is measured against."""
    from paras2s_jax.train.sft import shifted_targets, token_ce

    del rng
    out = model(batch["text"], batch["audio"], attention_mask=batch["attention_mask"])
    return {s: token_ce(logits[:, :-1], *shifted_targets(batch, s))
            for s, logits in (("text", out.text_logits), ("audio", out.audio_logits))}


def _train_step(cfg, batch, length: int, loss, seed: int = 0):
    """(A zero-argument callable running one SFT step on a fixed random batch, a dict
    that keeps the loss of its first call: at the initial weights, equal for every loss
    form and remat setting)."""
    import jax
    import numpy as np
    from flax import nnx

    from launch.speed.common import block
    from paras2s_jax.model import KimiAudio
    from paras2s_jax.train import sft
    from paras2s_jax.train import step as step_lib
    from paras2s_jax.train.optim import OptimizerConfig, make_optimizer, schedule

    model = KimiAudio(cfg, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ocfg = OptimizerConfig(lr=1e-5)
    tx = make_optimizer(ocfg)
    fn = step_lib.build_train_step(graphdef, loss, sft.sft_counts,
                                   {"text": 1.0, "audio": 1.0}, tx, schedule(ocfg))
    step = jax.jit(fn, donate_argnums=0)
    rng = np.random.default_rng(seed)
    shape = (batch, length)
    data = {
        "text": rng.integers(0, cfg.text_vocab_size, shape).astype(np.int32),
        "audio": rng.integers(cfg.audio_token_offset, cfg.vocab_size, shape).astype(np.int32),
        "text_mask": rng.random(shape) < 0.5, "audio_mask": rng.random(shape) < 0.8,
        "attention_mask": np.ones(shape, bool), "continuous": np.zeros(shape, bool),
    }
    holder = {"state": step_lib.init_state(params, tx, seed)}

    def run():
        # Wait for the whole new state, not the loss alone: the optimizer update would
        # otherwise finish inside the next contender's timing (the matmul peak's).
        holder["state"], metrics = block(step(holder["state"], data, rest))
        holder.setdefault("first_loss", float(metrics["loss"]))
    return run, holder


def run(args: argparse.Namespace) -> dict:
    import jax

    from launch.speed.common import interleaved, matmul_peak, profile, profile_line, table
    from launch.speed.shapes import dual_config, forward_flops
    from paras2s_jax.train.sft import sft_loss

    if args.size == "minute":
        cfg = dual_config("minute", 1)
        batch, length, peak_size = 2, 16, 256
        cfg = cfg.replace(head_chunk=4)
    else:
        layers = args.layers if args.size == "bench" else 8
        cfg = dual_config(args.size, 2, num_layers=layers, vocab_size=args.vocab,
                          head_chunk=args.head_chunk)
        batch, length, peak_size = args.batch, args.length, 2048
    dtype = "bfloat16" if args.size == "device" else "float32"
    cfg = cfg.replace(dtype=dtype)
    peak_fn, peak_flops = matmul_peak(peak_size * (4 if args.size == "device" else 1), dtype)
    flops = 3 * forward_flops(cfg, batch, length)
    # One train state alive at a time (memory); MFU is taken against the faster of two
    # peak measurements that bracket the variants.
    peak_before = interleaved({"matmul peak": peak_fn}, 10)
    rows, results, busy = [], {"step_flops": flops}, {}
    timings = {}
    variants = (("SFT step", cfg, sft_loss),
                ("SFT step, remat", cfg.replace(remat=True), sft_loss),
                ("SFT step, full logits", cfg, full_logits_loss),
                ("SFT step, full logits, remat", cfg.replace(remat=True), full_logits_loss))
    for name, variant, loss in variants:
        step_fn, holder = _train_step(variant, batch, length, loss)
        timings[name] = interleaved({name: step_fn}, args.repeats)
        if not busy:
            busy = profile(step_fn, args.profile)
        results[name] = {"first_loss": holder["first_loss"]}
        del step_fn, holder  # the train state goes with them
        gc.collect()
    peak_after = interleaved({"matmul peak": peak_fn}, 10)
    peak_s = min(t.median("matmul peak") for t in (peak_before, peak_after))
    peak_cpu_s = min(t.median_cpu("matmul peak") for t in (peak_before, peak_after))
    results["matmul_peak"] = {"before": peak_before.as_dict(), "after": peak_after.as_dict()}
    for name, *_ in variants:
        t, first_loss = timings[name], results[name]["first_loss"]
        s, peak = t.median(name), peak_flops / peak_s
        # Both MFUs are reported: on a busy machine other users' load shows in wall time,
        # and in CPU time the thread pools' waiting differs; figures above 1 mean the
        # load made the run unreliable.
        cpu_mfu = (flops / t.median_cpu(name)) / (peak_flops / peak_cpu_s)
        mfu = flops / s / peak
        results[name] = {"step_s": s, "mfu": mfu, "mfu_cpu_time": cpu_mfu,
                         "tokens_per_s": batch * length / s, "peak_flops_per_s": peak,
                         "first_loss": first_loss,
                         "timings": t.as_dict()}
        rows.append([name, s * 1e3, flops / s / 1e9, peak / 1e9, mfu, cpu_mfu])
    print(f"SFT step, batch {batch} x {length}, hidden {cfg.hidden_size}, {cfg.num_layers}+"
          f"{cfg.mimo_layers} layers, vocab {cfg.vocab_size}, {dtype}, heads in chunks of "
          f"{cfg.head_chunk} positions (full logits: one [B, L, V] per head), "
          f"{jax.default_backend()}; {flops / 1e12:.2f} model TFLOP per step; medians of "
          f"{args.repeats} interleaved rounds")
    print(table(["", "ms", "GFLOP/s", "matmul peak GFLOP/s", "MFU (wall)", "MFU (CPU time)"],
                rows))
    print(f"where the SFT step's time goes (jax.profiler): {profile_line(busy)}")
    losses = [results[name]["first_loss"] for name, *_ in variants]
    results["first_loss_spread"] = max(losses) - min(losses)
    print(f"first-step loss of the four variants (same weights and batch): {losses[0]:.6f}, "
          f"spread {results['first_loss_spread']:.1e}")
    for remat in ("", ", remat"):
        ratio = (results[f"SFT step, full logits{remat}"]["step_s"]
                 / results[f"SFT step{remat}"]["step_s"])
        print(f"step over full logits / step with the chunked loss{remat}: {ratio:.2f}x")
    mfu = results["SFT step"]["mfu_cpu_time"]
    results.update(mfu=mfu, profile=busy)
    verdict = ("unreliable: above 100%, the machine is too busy" if mfu > 1.0
               else "met" if mfu >= 0.5 else "NOT met")
    print(f"target SFT step >= 50% of the matmul peak (CPU time): {mfu:.0%} ({verdict})")
    return results
