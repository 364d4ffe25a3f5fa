"""SFT train step: time, achieved FLOP/s and MFU against this machine's matmul peak.

    python -m launch.speed train-step [--batch 4 --length 256 --layers 6]

One jitted step of the library's SFT stage (`train.step.build_train_step` with
`train.sft.sft_loss`: forward and backward through the trunk, the audio branch and both
heads, global-norm clipping, AdamW, the NaN guard) on Qwen2-0.5B-shaped layers with a
16k vocabulary (the full 152k vocabulary's optimizer state does not fit this machine's
shared memory). Model FLOPs = 3 x forward (matmuls + attention at full S²;
rematerialised recomputation does not count). The peak is a jitted square fp32 matmul
timed in the same rounds. Variants (one after the other, so one optimizer state is in
memory at a time): with and without per-layer remat. Target: >= 50%
of the peak.
"""

from __future__ import annotations

import argparse
import gc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6, help="trunk layers (+2 audio branch)")
    parser.add_argument("--vocab", type=int, default=16384)


def matmul_peak(size: int, dtype: str):
    """(callable, FLOPs per call) of a jitted square matmul: the attainable peak."""
    import jax
    import jax.numpy as jnp

    from launch.speed.common import block

    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    return (lambda: block(mm(a, b))), 2.0 * size**3


def _train_step(cfg, batch, length: int, seed: int = 0):
    """A zero-argument callable running one SFT step on a fixed random batch."""
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
    fn = step_lib.build_train_step(graphdef, sft.sft_loss, sft.sft_counts,
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
        holder["state"], metrics = step(holder["state"], data, rest)
        block(metrics["loss"])
    return run


def run(args: argparse.Namespace) -> dict:
    import jax

    from launch.speed.common import interleaved, profile, profile_line, table
    from launch.speed.shapes import dual_config, forward_flops

    if args.size == "minute":
        cfg = dual_config("minute", 1)
        batch, length, peak_size = 2, 16, 256
    else:
        layers = args.layers if args.size == "bench" else 8
        cfg = dual_config(args.size, 2, num_layers=layers, vocab_size=args.vocab)
        batch, length, peak_size = args.batch, args.length, 2048
    dtype = "bfloat16" if args.size == "device" else "float32"
    cfg = cfg.replace(dtype=dtype)
    peak_fn, peak_flops = matmul_peak(peak_size * (4 if args.size == "device" else 1), dtype)
    flops = 3 * forward_flops(cfg, batch, length)
    # One train state alive at a time (memory); each variant shares its rounds with the
    # matmul peak, and MFU is taken against the peak of the same rounds.
    rows, results, busy = [], {"step_flops": flops}, {}
    for name, variant in (("SFT step", cfg), ("SFT step, remat", cfg.replace(remat=True))):
        step_fn = _train_step(variant, batch, length)
        t = interleaved({"matmul peak": peak_fn, name: step_fn}, args.repeats)
        if not busy:
            busy = profile(step_fn, args.profile)
        del step_fn
        gc.collect()
        s, peak = t.median(name), peak_flops / t.median("matmul peak")
        # Both MFUs are reported: on a busy machine a short peak call and a long step see
        # other users' load differently in wall time, and in CPU time the thread pools'
        # waiting differs; figures above 1 mean the load made the run unreliable.
        cpu_mfu = (flops / t.median_cpu(name)) / (peak_flops / t.median_cpu("matmul peak"))
        mfu = flops / s / peak
        results[name] = {"step_s": s, "mfu": mfu, "mfu_cpu_time": cpu_mfu,
                         "tokens_per_s": batch * length / s, "peak_flops_per_s": peak,
                         "timings": t.as_dict()}
        rows.append([name, s * 1e3, flops / s / 1e9, peak / 1e9, mfu, cpu_mfu])
    print(f"SFT step, batch {batch} x {length}, hidden {cfg.hidden_size}, {cfg.num_layers}+"
          f"{cfg.mimo_layers} layers, vocab {cfg.vocab_size}, {dtype}, "
          f"{jax.default_backend()}; {flops / 1e12:.2f} model TFLOP per step; medians of "
          f"{args.repeats} interleaved rounds")
    print(table(["", "ms", "GFLOP/s", "matmul peak GFLOP/s", "MFU (wall)", "MFU (CPU time)"],
                rows))
    print(f"where the SFT step's time goes (jax.profiler): {profile_line(busy)}")
    mfu = results["SFT step"]["mfu_cpu_time"]
    results.update(mfu=mfu, profile=busy)
    verdict = ("unreliable: above 100%, the machine is too busy" if mfu > 1.0
               else "met" if mfu >= 0.5 else "NOT met")
    print(f"target SFT step >= 50% of the matmul peak (CPU time): {mfu:.0%} ({verdict})")
    return results
