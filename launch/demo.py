"""The embedded demo: ParaS2SAlign end to end in the toy paralinguistic world, on a CPU.

    python launch/demo.py [--model kimi_audio | qwen25_omni] [--workdir DIR] [--full | --fast]

`--model` picks the model family (default the tiny Kimi-Audio; `qwen25_omni`: the
toy-sized Qwen2.5-Omni of the `toy_omni` presets, in /tmp/paras2s/demo_omni by default).

1. Stage 1, SFT: the tiny model learns from imperfect spoken demonstrations.
2. Stage 2, reward model: the SFT model's sampled replies are judged by the toy rule
   judge; LoRA adapters learn to predict the judge's digit.
3. Stage 3, GRPO: G = 8 replies per prompt, rewards from the distilled reward model,
   KL to the SFT model on both streams: beta = 0.2 (the paper) and beta = 0, a few
   training seeds each; the beta = 0 runs go to a second process (the second core).
Then the untrained, SFT and GRPO models are restored and scored by the toy judge on
held-out queries and on the general-ability probe (style-independent requests SFT
taught and RL never sees: the toy VoiceBench), and one table shows each effect of the
paper: base < SFT < GRPO per dimension, the KL term keeping general ability (paired
interval over training seeds), the integer judge's ties at G = 2 vs G = 8 (the SFT
model's distillation replies) and the reward model's Pearson with the judge.

The default lengths are shortened where they carry no effect; `--full` runs the
lengths of the stage presets (SFT 600 (Qwen2.5-Omni: 900), RM 300, GRPO 60 steps; 3 seeds
per beta).
Compiled programs are shared through one jax compilation cache in <workdir>/jax_cache.
Every number comes from this run; it is deterministic for a seed on CPU, and re-running
resumes finished stages and runs from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BETAS = (0.2, 0.0)  # the paper's KL weight and none
# --model -> (the stage presets' name, the default work directory)
MODELS = {"kimi_audio": ("toy", "/tmp/paras2s/demo"),
          "qwen25_omni": ("toy_omni", "/tmp/paras2s/demo_omni")}


def _lengths(mode: str) -> dict:
    """Steps per stage and GRPO training seeds per beta for `mode` (SFT None: the SFT
    preset's own length, 600 steps for Kimi-Audio, 900 for Qwen2.5-Omni)."""
    if mode == "full":  # the stage presets' lengths
        return {"sft": None, "reward": 300, "grpo": 60, "grpo_seeds": 3}
    if mode == "fast":  # a smoke version for tests: same code paths, fewer steps
        return {"sft": 60, "reward": 20, "grpo": 4, "grpo_seeds": 2}
    # SFT keeps the preset's steps: Kimi-Audio learns the general-ability requests between
    # steps 300 and 450 (probe 1.9 at 300, 4.8 at 450), and the beta comparison is about
    # keeping them.
    return {"sft": None, "reward": 200, "grpo": 20, "grpo_seeds": 3}


def stage_configs(workdir: Path, fast: bool = False, mode: str | None = None,
                  model: str = "kimi_audio") -> dict:
    """The toy presets of the three stages for `model` (a key of `MODELS`), chained
    through `workdir`, at the lengths of `mode` ("quick": the demo's default; "full": the
    presets'; "fast": a smoke test)."""
    from configs import grpo, reward, sft

    mode = mode or ("fast" if fast else "full")
    steps = _lengths(mode)
    preset = MODELS[model][0]
    s, r, g = (m.get_config(preset) for m in (sft, reward, grpo))
    steps["sft"] = steps["sft"] or s.train.total_steps
    s.workdir, r.workdir, g.workdir = (str(workdir / n) for n in ("sft", "reward", "grpo"))
    s.train.total_steps = s.train.save_every = steps["sft"]
    s.optimizer.decay_steps = max(1, steps["sft"] - s.optimizer.warmup_steps)
    s.toy.judge = False  # the demo scores base and SFT itself
    r.train.total_steps = steps["reward"]
    r.optimizer.decay_steps = max(1, steps["reward"] - r.optimizer.warmup_steps)
    g.train.total_steps = g.optimizer.decay_steps = steps["grpo"]
    if mode != "full":  # the eval losses of the intermediate steps show no effect
        s.train.eval_every = 0
        r.train.eval_every = r.train.save_every = steps["reward"]
        g.train.save_every = steps["grpo"]
    if mode == "quick":  # a third of the steps at twice the rate: about as far from SFT
        g.optimizer.lr = 2 * g.optimizer.lr
    if mode == "fast":
        r.toy.num_train_queries = 32
        r.distill.samples_per_query = 8
        g.grpo.query_batch = 4
    sft_final = workdir / "sft" / "checkpoints" / str(steps["sft"])
    r.init.path = g.init.path = str(sft_final)
    r.toy.data_dir = g.toy.data_dir = str(workdir / "sft" / "toy_data")
    g.reward.path = str(workdir / "reward" / "reward_model")
    for c in (s, r, g):
        c.train.progress = False
    return {"sft": s, "reward": r, "grpo": g}


def _final_step(cfg) -> Path:
    return Path(cfg.workdir) / "checkpoints" / str(cfg.train.total_steps)


def check_mode(workdir: Path, mode: str, model: str = "kimi_audio") -> None:
    """Record the lengths and model a workdir was made with; refuse to resume it with
    others."""
    marker = workdir / "demo_mode.json"
    if marker.exists():
        stored = json.loads(marker.read_text())
        made, made_model = stored["mode"], stored.get("model", "kimi_audio")
        if made_model != model:
            raise SystemExit(f"{workdir} holds a demo run of --model {made_model}: rerun with "
                             f"--model {made_model}, or pass another --workdir")
        if made != mode:
            flag = {"full": "--full", "fast": "--fast"}.get(made, "neither --full nor --fast")
            raise SystemExit(f"{workdir} holds a demo run with other lengths ({made}): rerun "
                             f"with {flag}, or pass another --workdir")
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"mode": mode, "model": model}))


def use_compilation_cache(workdir: Path) -> None:
    """Keep every compiled program in <workdir>/jax_cache: runs of the same shapes (GRPO
    seeds, the second process, a resumed demo) load it instead of compiling again."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(workdir / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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


def grpo_run_dir(configs: dict, beta: float, seed: int) -> Path:
    """Where the GRPO run of (`beta`, `seed`) lives; beta = 0.2, seed 0 is the grpo stage."""
    if (beta, seed) == (BETAS[0], configs["grpo"].seed):
        return Path(configs["grpo"].workdir)
    return Path(configs["grpo"].workdir).parent / "grpo_runs" / f"beta{beta:g}_seed{seed}"


def grpo_run(configs: dict, beta: float, seed: int, eval_seeds: int) -> dict:
    """Train (or resume) GRPO with KL weight `beta` on both streams and training seed
    `seed`, then score it; the evaluation row is kept in the run's eval.json."""
    from paras2s_jax.train import stages

    root = grpo_run_dir(configs, beta, seed)
    cfg = configs["grpo"].copy_and_resolve_references()
    cfg.workdir = str(root)
    cfg.seed = cfg.data.shuffle_seed = seed
    cfg.grpo.beta_text = cfg.grpo.beta_audio = beta
    start = time.perf_counter()
    if (root / "results.json").exists() and _final_step(cfg).exists():
        print(f"== GRPO beta {beta:g} seed {seed}: already done ({root})", flush=True)
    else:
        print(f"== GRPO beta {beta:g} seed {seed}: {root}", flush=True)
        stages.get("grpo")(cfg)
    saved = root / "eval.json"
    if not saved.exists():
        saved.write_text(json.dumps(evaluate_checkpoint(configs, _final_step(cfg), eval_seeds)))
    print(f"   GRPO beta {beta:g} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(saved.read_text())


def _base_model(configs: dict, workdir: Path) -> Path:
    """The untrained model, saved once through the same save/restore path as the rest."""
    from paras2s_jax.checkpoint.orbax_io import save_model
    from paras2s_jax.train.trainer import model_config, model_family

    sft_cfg = configs["sft"]
    base_dir = workdir / "base_model"
    if not base_dir.exists():
        family = model_family(sft_cfg.model)
        save_model(base_dir, family.build(model_config(sft_cfg.model), sft_cfg.seed))
    return base_dir


def _lane_command(args: argparse.Namespace, beta: float) -> list[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--workdir", args.workdir,
           "--model", args.model, "--seeds", str(args.seeds), "--grpo-beta", f"{beta:g}"]
    return cmd + (["--full"] if args.full else []) + (["--fast"] if args.fast else [])


def _grpo_lane(configs: dict, beta: float, seeds: int, eval_seeds: int) -> list[dict]:
    return [grpo_run(configs, beta, seed, eval_seeds) for seed in range(seeds)]


def _stage(name: str, cfg) -> dict:
    from paras2s_jax.train import stages

    if (Path(cfg.workdir) / "results.json").exists() and _final_step(cfg).exists():
        print(f"== stage {name}: already done ({cfg.workdir})", flush=True)
        return json.loads((Path(cfg.workdir) / "results.json").read_text())
    print(f"== stage {name}: {cfg.workdir}", flush=True)
    return stages.get(cfg.stage)(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), default="kimi_audio",
                        help="model family: the tiny Kimi-Audio or the toy Qwen2.5-Omni")
    parser.add_argument("--workdir", default=None,
                        help="default: /tmp/paras2s/demo (kimi_audio), "
                             "/tmp/paras2s/demo_omni (qwen25_omni)")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds of the evaluation")
    lengths = parser.add_mutually_exclusive_group()
    lengths.add_argument("--full", action="store_true",
                         help="the presets' lengths: SFT 600 (Omni 900), RM 300, GRPO 60 "
                              "steps x 3 seeds")
    lengths.add_argument("--fast", action="store_true", help="a few steps per stage (smoke test)")
    # Internal: the second process runs the GRPO runs of one beta.
    parser.add_argument("--grpo-beta", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workdir = args.workdir or MODELS[args.model][1]
    workdir = Path(args.workdir)
    mode = "full" if args.full else "fast" if args.fast else "quick"
    check_mode(workdir, mode, args.model)
    use_compilation_cache(workdir)
    configs = stage_configs(workdir, mode=mode, model=args.model)
    grpo_seeds = _lengths(mode)["grpo_seeds"]
    if args.grpo_beta is not None:
        _grpo_lane(configs, args.grpo_beta, grpo_seeds, args.seeds)
        return

    timings, results = {}, {}
    for name in ("sft", "reward"):
        start = time.perf_counter()
        results[name] = _stage(name, configs[name])
        timings[name] = time.perf_counter() - start
    # GRPO: beta = 0 in a second process while this one runs beta = 0.2 and scores the
    # untrained and SFT models.
    start = time.perf_counter()
    log = workdir / "grpo_runs" / "beta0.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        lane = subprocess.Popen(_lane_command(args, BETAS[1]), stdout=out,
                                stderr=subprocess.STDOUT)
    print(f"== GRPO beta 0 runs in a second process (log: {log})", flush=True)
    try:
        runs = {BETAS[0]: _grpo_lane(configs, BETAS[0], grpo_seeds, args.seeds)}
        base = evaluate_checkpoint(configs, _base_model(configs, workdir), args.seeds)
        sft = evaluate_checkpoint(configs, _final_step(configs["sft"]), args.seeds)
    finally:
        code = lane.wait()
    if code != 0:
        raise SystemExit(f"the beta = 0 GRPO process failed (exit {code}); its log, {log}, "
                         "ends with:\n" + "".join(log.read_text().splitlines(True)[-30:]))
    runs[BETAS[1]] = [json.loads((grpo_run_dir(configs, BETAS[1], seed) / "eval.json")
                                 .read_text()) for seed in range(grpo_seeds)]
    timings["grpo + evaluation"] = time.perf_counter() - start
    print_table(configs, workdir, base, sft, runs, results["reward"], args.seeds, timings)


def print_table(configs: dict, workdir: Path, base: dict, sft: dict, runs: dict,
                reward_results: dict, seeds: int, timings: dict) -> None:
    """Print the effects table and the stage times; keep both in demo_results.json."""
    from paras2s_jax.toyworld.demos import read_queries
    from paras2s_jax.toyworld.effects import distilled_scores, effects_table, tie_rates

    rm = {k.split("/", 1)[1]: v for k, v in reward_results.items() if k.startswith("heldout/")}
    distill = Path(configs["reward"].workdir) / "distill"
    ties = tie_rates(distilled_scores(distill / "train"))
    n_distill = len(distilled_scores(distill / "train"))
    n_pairs = sum(len(s) for s in distilled_scores(distill / "heldout"))
    n = len(read_queries(workdir / "sft" / "toy_data" / "eval-queries.jsonl"))
    g = configs["grpo"]
    print(f"\nToy ParaS2SBench, every number from this run: toy-judge scores (1-5) on {n} "
          f"held-out queries x {seeds} sampling seeds; general ability: style-independent "
          f"requests from the SFT data, never RL prompts. SFT {configs['sft'].train.total_steps}"
          f" steps, RM {configs['reward'].train.total_steps} steps, GRPO "
          f"{g.train.total_steps} steps of {g.grpo.query_batch} prompts x G = "
          f"{g.grpo.group_size} (GRPO = β 0.2, mean over {len(runs[BETAS[0]])} training "
          "seeds; ± : 95% t-interval over training seeds)")
    rows = effects_table(base, sft, runs, ties, rm, n_pairs, n_distill)
    print("\n".join(rows))
    if not next(r for r in rows if r.startswith("| KL term")).endswith("| yes |"):
        seeds_per_beta = len(runs[BETAS[0]])
        more = ("`--full` runs 60 steps" if g.train.total_steps < 60 else
                "`python launch/ablate.py beta --seeds N` runs more training seeds")
        print(f"The KL term's effect on general ability is not shown at {g.train.total_steps} "
              f"GRPO steps x {seeds_per_beta} training seeds per β; {more}.")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    (workdir / "demo_results.json").write_text(json.dumps(
        {"base": base, "sft": sft, "grpo": {f"{b:g}": r for b, r in runs.items()},
         "tie_rates": {str(k): v for k, v in ties.items()}, "reward_model": rm,
         "table": rows, "seconds": timings}, indent=2))


if __name__ == "__main__":
    main()
