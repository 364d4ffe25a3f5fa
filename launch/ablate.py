"""Toy-world ablations: GRPO's KL weight and group size, RM view, reward audits and
uncertainty-driven distillation.

    python launch/ablate.py beta [--workdir /tmp/paras2s/demo] [--steps 60] [--seeds 3]
    python launch/ablate.py group [--steps 40]
    python launch/ablate.py rm-view [--seeds 3] [--steps 0]
    python launch/ablate.py audit [--seeds 3] [--steps 200]
    python launch/ablate.py distill [--seeds 3]

All start from the demo's SFT checkpoint and reward model (`launch/demo.py` makes them
first if they are missing) and run GRPO (reward models for `rm-view` and `distill`) once
per setting and seed, in <workdir>/ablate/.

- `beta`: beta = 0.2 vs 0 on both streams, `--seeds` training seeds each. Prints the KL
  to the SFT reference per stream over the run, then the paralinguistic score and the
  general-ability probe (style-independent requests from the SFT data that RL never
  sees: the toy VoiceBench) for base / SFT / GRPO(beta) with 95% confidence intervals
  (t over training seeds for GRPO; over evaluation sampling seeds for base and SFT).
- `group`: G = 2, 4, 8 at a fixed number of replies per step. Per step, the reward
  model's rewards (trained on) and the integer toy judge's scores of the same replies
  (logged only): the fraction of groups with no spread (zero advantage, no learning
  signal), the mean within-group std and mean |advantage|; then the held-out score.
- `rm-view`: reward models reading the reply's audio only (what the judge hears), text
  only, or both, trained on the same judged replies (the demo's distillation data) with
  `--seeds` seeds each: held-out Pearson and exact-digit agreement with the toy judge
  (95% CIs over seeds); with `--steps N > 0` also N GRPO steps with each view's seed-0
  model and the judge's held-out score after them.
- `audit`: GRPO at lr 5e-4 (the paper's RL rate; the toy preset's is 1e-4) without
  reward audits, with audits under rule "rollback" and under rule "stop", `--seeds`
  training seeds each. Prints SFT's held-out toy-judge score, then per condition the
  score of each run's last checkpoint (mean ± 95% CI over seeds), how many runs ended
  below SFT's mean, each audit action (seed, step, judge mean vs the best audit's, from
  <run>/audits.jsonl) and the judge calls the audits spent. The default 200 steps:
  at 60 steps no seed fell below SFT; later the judge's score falls while the reward
  model's mean stays flat (docs/demo.md). Audit settings (`AUDIT`): every 10 steps (a
  drop is seen within 10 steps; 21 audits cost 2688 judge calls per run, ~10% of the
  rollouts' replies), 32 held-out prompts x 4 replies (128 rows, a rollout's batch; the
  standard error of a 128-reply judge mean is under 0.09 for a per-reply spread up to 1),
  the rule acting when the judge mean falls more than 0.25 below the best audit's (over 2
  standard errors of a difference of two means: few false alarms) with patience 1 (act
  on the first drop: a false alarm costs a rollback, a missed one the run). max_gap is off:
  this reward model under-rates every policy (RM - judge is -0.46 at SFT and
  about -0.8 while GRPO improves), so a fixed gap threshold is a calibration guess, while
  the drop is measured against the run's own best. max_rollbacks 20 (one per audit):
  the rollback run never stops, so its last checkpoint was rolled back or is within 0.25
  of the best audit. The audit prompts are drawn from the held-out queries the final
  score is measured on (the toy has no third split): audits select checkpoints on them.
- `distill`: reward-model held-out Pearson and exact-digit agreement with the toy judge
  vs the number of judged training pairs, for `distill.selection` "random" and
  "uncertainty", `--seeds` seeds each, on the demo's pool of sampled replies; then
  whether uncertainty selection reaches random's full-pool Pearson with at most a
  quarter of the judge calls (launch/ablate_distill.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.demo import evaluate_checkpoint, stage_configs, use_compilation_cache  # noqa: E402
from paras2s_jax.toyworld.effects import ci95  # noqa: E402


def _ensure_prerequisites(workdir: Path) -> dict:
    from paras2s_jax.train import stages

    configs = stage_configs(workdir, fast=False)
    for name in ("sft", "reward"):
        cfg = configs[name]
        if not (Path(cfg.workdir) / "results.json").exists():
            print(f"== prerequisite stage {name}: {cfg.workdir}", flush=True)
            stages.get(cfg.stage)(cfg)
    return configs


def _run_dir(configs: dict, name: str, steps: int, seed: int) -> Path:
    return Path(configs["grpo"].workdir).parent / "ablate" / f"{name}_steps{steps}_seed{seed}"


def _run(configs: dict, name: str, steps: int, seed: int = 0, reward: Path | None = None,
         lr: float | None = None, audit: dict | None = None,
         **grpo_fields) -> tuple[list[dict], dict]:
    """One GRPO run with `grpo_fields` changed (and the reward model of the reward-stage
    workdir `reward`, read under its view; the learning rate `lr`; `config.audit` fields
    `audit`); (per-step metrics, evaluation row of its last checkpoint, kept in the
    run's eval.json)."""
    from paras2s_jax.train import stages
    from paras2s_jax.train.reward_stage import VIEW_FILE

    cfg = configs["grpo"].copy_and_resolve_references()
    root = _run_dir(configs, name, steps, seed)
    cfg.workdir = str(root)
    cfg.seed = cfg.data.shuffle_seed = seed
    cfg.train.total_steps, cfg.train.save_every = steps, steps
    cfg.optimizer.decay_steps = steps
    if reward is not None:
        cfg.reward.path = str(reward / "reward_model")
        cfg.reward.view = json.loads((reward / "reward_model" / VIEW_FILE).read_text())["view"]
    if lr is not None:
        cfg.optimizer.lr = lr
    for key, value in grpo_fields.items():
        setattr(cfg.grpo, key, value)
    for key, value in (audit or {}).items():
        setattr(cfg.audit, key, value)
    if not (root / "results.json").exists():
        print(f"== GRPO {name} seed {seed}: {root}", flush=True)
        stages.get("grpo")(cfg)
    history = [json.loads(x) for x in (root / "metrics.jsonl").read_text().splitlines()]
    saved = root / "eval.json"
    if not saved.exists():
        last = max(int(p.name) for p in (root / "checkpoints").iterdir() if p.name.isdigit())
        row = evaluate_checkpoint(configs, root / "checkpoints" / str(last))  # a stop: earlier
        saved.write_text(json.dumps(row, indent=2))
    return history, json.loads(saved.read_text())


def _fmt(values: list[float]) -> str:
    mean, half = ci95(values)
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def _sft_row(configs: dict) -> dict:
    """The SFT checkpoint's evaluation row (3 sampling seeds)."""
    return evaluate_checkpoint(configs, Path(configs["sft"].workdir) / "checkpoints"
                               / str(configs["sft"].train.total_steps))


def beta_sweep(configs: dict, steps: int, seeds: int) -> None:
    runs = {beta: [_run(configs, f"beta_{beta:g}", steps, seed, beta_text=beta,
                        beta_audio=beta) for seed in range(seeds)] for beta in (0.2, 0.0)}
    marks = sorted({max(1, steps // 4), steps // 2, steps})
    print(f"\nKL(policy || SFT reference) per stream, k3 estimate, {steps} GRPO steps, "
          f"mean over {seeds} seeds")
    print("| beta | stream | " + " | ".join(f"step {m}" for m in marks) + " |")
    print("|---" * (len(marks) + 2) + "|")
    for beta, results in runs.items():
        for stream in ("text", "audio"):
            kl = [sum(h[m - 1][f"kl_{stream}"] for h, _ in results) / len(results)
                  for m in marks]
            print(f"| {beta:g} | {stream} | " + " | ".join(f"{v:.4f}" for v in kl) + " |")

    base = evaluate_checkpoint(configs, Path(configs["sft"].workdir).parent / "base_model")
    sft = _sft_row(configs)
    print(f"\nForgetting: toy-judge scores (1-5), mean ± 95% CI; GRPO over {seeds} training "
          "seeds, base and SFT over 3 evaluation sampling seeds")
    print("| system | paralinguistic (held-out) | general ability |")
    print("|---|---|---|")
    for name, row in (("base (untrained)", base), ("SFT", sft)):
        print(f"| {name} | {_fmt(row['per_seed']['overall'])} | "
              f"{_fmt(row['per_seed']['general'])} |")
    for beta, results in runs.items():
        print(f"| GRPO β = {beta:g} | {_fmt([r['overall'] for _, r in results])} | "
              f"{_fmt([r['general'] for _, r in results])} |")


SPREAD = ("zero_spread_groups", "reward_group_std", "advantage_abs_mean")


def group_sweep(configs: dict, steps: int) -> None:
    replies = configs["grpo"].grpo.query_batch * configs["grpo"].grpo.group_size
    rows = []
    for g in (2, 4, 8):
        history, row = _run(configs, f"group_{g}", steps, group_size=g,
                            query_batch=replies // g)
        for label, prefix in (("RM", ""), ("judge", "judge_")):
            mean = [sum(h.get(prefix + k, math.nan) for h in history) / len(history)
                    for k in SPREAD]
            rows.append(f"| {g} | {replies // g} | {label} | "
                        + " | ".join(f"{v:.3f}" for v in mean) + f" | {row['overall']:.3f} |")
    print(f"\nGroup size sweep: {replies} replies per step, {steps} GRPO steps, means over "
          "steps. RM: the reward model's expected score (the reward trained on); judge: the "
          "integer toy judge's score of the same replies (logged, not trained on)")
    print("| G | prompts per step | reward | zero-spread groups | within-group std | "
          "mean abs advantage | held-out score |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def view_sweep(configs: dict, steps: int, seeds: int) -> None:
    """Reward models of each view on the demo's judged replies, `seeds` training seeds
    each (LoRA init and data order); with `steps`, GRPO with each seed-0 model."""
    from paras2s_jax.train import stages
    from paras2s_jax.train.reward import VIEWS

    demo = configs["reward"]
    rows = []
    for view in VIEWS:
        results, roots = [], []
        for seed in range(seeds):
            root = Path(demo.workdir)
            if (view, seed) != (demo.reward.view, demo.seed):  # else the demo's own model
                cfg = demo.copy_and_resolve_references()
                root = root.parent / "ablate" / f"reward_view_{view}_seed{seed}"
                cfg.workdir, cfg.reward.view = str(root), view
                cfg.seed = cfg.data.shuffle_seed = seed
                root.mkdir(parents=True, exist_ok=True)
                if not (root / "distill").exists():  # the same judged replies for every run
                    (root / "distill").symlink_to(Path(demo.workdir) / "distill")
                if not (root / "results.json").exists():
                    print(f"== reward model, view {view}, seed {seed}: {root}", flush=True)
                    stages.get("reward")(cfg)
            results.append(json.loads((root / "results.json").read_text()))
            roots.append(root)
        score = _run(configs, f"grpo_view_{view}", steps, reward=roots[0])[1]["overall"] \
            if steps else math.nan
        rows.append((view, [r["heldout/pearson"] for r in results],
                     [r["heldout/accuracy"] for r in results], score))
    print("\nReward-model view: what of the reply the RM reads; agreement with the toy judge "
          f"(which hears the speech) on held-out pairs, mean ± 95% CI over {seeds} RM "
          "training seeds" + (f"; GRPO {steps} steps with the seed-0 RM" if steps else ""))
    print("| RM view | Pearson | exact digit | per seed (Pearson) |"
          + (" held-out score after GRPO |" if steps else ""))
    print("|---|---|---|---|" + ("---|" if steps else ""))
    for view, pearson, accuracy, score in rows:
        print(f"| {view} | {_fmt(pearson)} | {_fmt(accuracy)} | "
              + ", ".join(f"{p:.3f}" for p in pearson) + " |"
              + (f" {score:.3f} |" if steps else ""))


RL_LR = 5e-4  # the paper's RL rate; the toy preset uses 1e-4 (configs/grpo.py)
# The audited condition's `config.audit` (see the module docstring for the choices).
AUDIT = {"every": 10, "prompts": 32, "samples_per_prompt": 4, "seed": 0,
         "min_judge_drop": 0.25, "max_gap": 0.0, "patience": 1, "max_rollbacks": 20}
AUDIT_RULES = ("rollback", "stop")


def _audit_actions(root: Path, seed: int) -> tuple[list[str], int]:
    """The audits of the run in `root` that acted ("seed s, step k: action (why)") and the
    judge calls its audits spent."""
    from paras2s_jax.train.grpo_audit import AUDIT_FILE

    path = root / AUDIT_FILE
    records = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    acted = []
    for r in records:
        if r["action"]:
            why = []
            if "max_gap" in r["reason"]:
                why.append(f"RM - judge {r['gap']:.2f}")
            if "min_judge_drop" in r["reason"]:
                why.append(f"judge {r['judge_mean']:.2f} < best {r['judge_best']:.2f}")
            acted.append(f"seed {seed}, step {r['step']}: {r['action']} ({'; '.join(why)})")
    return acted, sum(r["judge_calls"] for r in records)


def audit_sweep(configs: dict, steps: int, seeds: int) -> None:
    """GRPO at lr 5e-4 without and with reward audits (`AUDIT`), `seeds` training seeds
    each; the final checkpoint's held-out judge score and what the audits did."""
    conditions = {"no audits": None,
                  **{f"audits, {rule}": {**AUDIT, "rule": rule} for rule in AUDIT_RULES}}
    sft = _sft_row(configs)
    floor = sft["overall"]
    rows = []
    for label, audit in conditions.items():
        name = "audit_none" if audit is None else f"audit_{audit['rule']}"
        scores, acted, calls = [], [], []
        for seed in range(seeds):
            name_lr = f"{name}_lr{RL_LR:g}"
            _, row = _run(configs, name_lr, steps, seed, lr=RL_LR, audit=audit)
            scores.append(row["overall"])
            a, n = _audit_actions(_run_dir(configs, name_lr, steps, seed), seed)
            acted += a
            calls.append(n)
        rows.append(f"| GRPO, {label} | {_fmt(scores)} | "
                     + ", ".join(f"{x:.3f}" for x in scores)
                     + f" | {sum(x < floor for x in scores)} of {seeds} | "
                     + ("; ".join(acted) or "none") + f" | {sum(calls)} |")
    print(f"\nReward audits: GRPO at lr {RL_LR:g} (the paper's RL rate), {steps} steps, "
          f"{seeds} training seeds per condition; toy-judge score (1-5) of each run's last "
          "checkpoint on the held-out queries x 3 sampling seeds, mean ± 95% CI over "
          f"training seeds. Audits: every {AUDIT['every']} steps, {AUDIT['prompts']} "
          f"held-out prompts x {AUDIT['samples_per_prompt']} replies; the rule acts when "
          f"the judge mean falls more than {AUDIT['min_judge_drop']} below the best audit's")
    print("| system | held-out score | per seed | runs below SFT | audit actions "
          "(seed, step: action (why)) | judge calls on audits |")
    print("|---|---|---|---|---|---|")
    print(f"| SFT (start) | {_fmt(sft['per_seed']['overall'])} | "
          + ", ".join(f"{x:.3f}" for x in sft["per_seed"]["overall"]) + " | | | |")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", choices=("beta", "group", "rm-view", "audit", "distill"))
    parser.add_argument("--workdir", default="/tmp/paras2s/demo")
    parser.add_argument("--steps", type=int, default=None,
                        help="GRPO steps per setting (default 60; audit: 200; rm-view: 0, "
                        "no GRPO; distill: not used)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds (beta, audit: GRPO runs per setting; "
                        "rm-view, distill: reward models)")
    args = parser.parse_args()
    use_compilation_cache(Path(args.workdir))  # the demo's compiled programs
    configs = _ensure_prerequisites(Path(args.workdir))
    steps = args.steps if args.steps is not None else \
        {"rm-view": 0, "audit": 200}.get(args.sweep, 60)
    if args.sweep == "beta":
        beta_sweep(configs, steps, args.seeds)
    elif args.sweep == "group":
        group_sweep(configs, steps)
    elif args.sweep == "audit":
        audit_sweep(configs, steps, args.seeds)
    elif args.sweep == "distill":
        from launch.ablate_distill import distill_sweep

        distill_sweep(configs, args.seeds)
    else:
        view_sweep(configs, steps, args.seeds)


if __name__ == "__main__":
    main()
