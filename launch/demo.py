"""The embedded demo: ParaS2SAlign end to end in the toy paralinguistic world, on a CPU.

    python launch/demo.py [--workdir /tmp/paras2s/demo] [--fast]

1. Stage 1, SFT: the tiny Kimi-Audio learns from imperfect spoken demonstrations.
2. Stage 2, reward model: the SFT model's sampled replies are judged by the toy rule
   judge; LoRA adapters learn to predict the judge's digit.
3. Stage 3, GRPO: G = 8 replies per prompt, rewards from the distilled reward model,
   KL (beta = 0.2) to the SFT model on both the text and the audio stream.
Then each stage's Orbax checkpoint is restored (the untrained model's too) and scored by
the toy judge on held-out queries: a paper-style table per dimension and overall, a
"general ability" column (style-independent requests that SFT taught and RL never
sees: the toy VoiceBench, where forgetting would show), plus the reward model's
Pearson correlation with the judge on held-out pairs. Every number
comes from this run. Re-running resumes finished stages from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stage_configs(workdir: Path, fast: bool) -> dict:
    """The toy presets of the three stages, chained through `workdir`."""
    from configs import grpo, reward, sft

    s, r, g = sft.get_config("toy"), reward.get_config("toy"), grpo.get_config("toy")
    s.workdir, r.workdir, g.workdir = (str(workdir / n) for n in ("sft", "reward", "grpo"))
    sft_final = workdir / "sft" / "checkpoints" / str(s.train.total_steps)
    toy_data = str(workdir / "sft" / "toy_data")
    r.init.path = g.init.path = str(sft_final)
    r.toy.data_dir = g.toy.data_dir = toy_data
    g.reward.path = str(workdir / "reward" / "reward_model")
    if fast:  # a smoke version for tests: same code paths, fewer steps
        s.train.total_steps, s.train.eval_every, s.train.save_every = 60, 0, 60
        s.toy.judge = False
        r.init.path = g.init.path = str(workdir / "sft" / "checkpoints" / "60")
        r.train.total_steps, r.train.eval_every, r.train.save_every = 20, 0, 20
        r.toy.num_train_queries = 32
        r.distill.samples_per_query = 4
        g.train.total_steps, g.train.save_every = 4, 4
        g.grpo.query_batch = 4
    for c in (s, r, g):
        c.train.progress = False
    return {"sft": s, "reward": r, "grpo": g}


def _final_step(cfg) -> Path:
    return Path(cfg.workdir) / "checkpoints" / str(cfg.train.total_steps)


def evaluate_checkpoint(configs: dict, path: Path, seeds: int = 3) -> dict:
    """Toy-judge score of the model restored from `path`: per dimension, overall and
    "general" (the general-ability probe), means over `seeds` sampling seeds, and the
    per-seed values of the last two under "per_seed"."""
    import jax

    from paras2s_jax.checkpoint.orbax_io import restore_model
    from paras2s_jax.sampling import sampling_from_settings
    from paras2s_jax.toyworld import DIMENSIONS
    from paras2s_jax.toyworld.demos import read_general_queries, read_queries
    from paras2s_jax.toyworld.evaluate import score_model

    sft_cfg = configs["sft"]
    sampling = sampling_from_settings(sft_cfg.toy.sampling)
    data = Path(sft_cfg.workdir) / "toy_data"
    queries = read_queries(data / "eval-queries.jsonl")
    general = read_general_queries(data / "general-queries.jsonl")
    model = restore_model(path)
    scores = [score_model(model, queries, jax.random.PRNGKey(seed), sampling)
              for seed in range(seeds)]
    probe = [score_model(model, general, jax.random.PRNGKey(seed), sampling).mean
             for seed in range(seeds)]
    row = {d: sum(x.per_dimension[d] for x in scores) / seeds for d in DIMENSIONS}
    row["overall"] = sum(x.mean for x in scores) / seeds
    row["general"] = sum(probe) / seeds
    row["per_seed"] = {"overall": [x.mean for x in scores], "general": probe}
    return row


def evaluate(configs: dict, workdir: Path, seeds: int) -> dict:
    """Restore the base, SFT and GRPO checkpoints and score each with the toy judge."""
    from flax import nnx

    from paras2s_jax.checkpoint.orbax_io import save_model
    from paras2s_jax.model import KimiAudio
    from paras2s_jax.train.trainer import model_config

    sft_cfg = configs["sft"]
    base_dir = workdir / "base_model"
    if not base_dir.exists():  # the untrained model, through the same save/restore path
        save_model(base_dir, KimiAudio(model_config(sft_cfg.model), rngs=nnx.Rngs(sft_cfg.seed)))
    checkpoints = {"base (untrained)": base_dir, "SFT": _final_step(sft_cfg),
                   "GRPO": _final_step(configs["grpo"])}
    return {name: evaluate_checkpoint(configs, path, seeds) for name, path in checkpoints.items()}


def print_table(table: dict, rm: dict, n_queries: int, seeds: int) -> None:
    from paras2s_jax.toyworld import DIMENSIONS

    cols = (*DIMENSIONS, "overall", "general")
    print(f"\nToy ParaS2SBench: mean toy-judge score (1-5) on {n_queries} held-out queries "
          f"x {seeds} sampling seeds; general ability: style-independent requests from "
          "the SFT data, never RL prompts")
    print("| system | " + " | ".join(cols[:-1]) + " | general ability |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    print(f"\nreward model vs toy judge on held-out pairs: Pearson {rm['pearson']:.3f}, "
          f"exact digit {rm['accuracy']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/paras2s/demo")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds of the evaluation")
    parser.add_argument("--fast", action="store_true", help="a few steps per stage (smoke test)")
    args = parser.parse_args()
    workdir = Path(args.workdir)

    from paras2s_jax.train import stages

    configs = stage_configs(workdir, args.fast)
    timings = {}
    results = {}
    for name, cfg in configs.items():
        start = time.perf_counter()
        done = (Path(cfg.workdir) / "results.json").exists() and _final_step(cfg).exists()
        if done:
            results[name] = json.loads((Path(cfg.workdir) / "results.json").read_text())
            print(f"== stage {name}: already done ({cfg.workdir})", flush=True)
        else:
            print(f"== stage {name}: {cfg.workdir}", flush=True)
            results[name] = stages.get(cfg.stage)(cfg)
        timings[name] = time.perf_counter() - start
    start = time.perf_counter()
    table = evaluate(configs, workdir, args.seeds)
    timings["evaluation"] = time.perf_counter() - start
    rm = {k.split("/", 1)[1]: v for k, v in results["reward"].items()
          if k.startswith("heldout/")}
    from paras2s_jax.toyworld.demos import read_queries

    n = len(read_queries(workdir / "sft" / "toy_data" / "eval-queries.jsonl"))
    print_table(table, rm, n, args.seeds)
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    (workdir / "demo_results.json").write_text(json.dumps(
        {"table": table, "reward_model": rm, "seconds": timings}, indent=2))


if __name__ == "__main__":
    main()
