"""Toy-world ablations of GRPO: the KL weight beta, and the group size G.

    python launch/ablate.py beta [--workdir /tmp/paras2s/demo] [--steps 60]
    python launch/ablate.py group [--workdir /tmp/paras2s/demo] [--steps 60]

Both start from the demo's SFT checkpoint and reward model (`launch/demo.py` makes them
first if they are missing) and run GRPO once per setting, in <workdir>/ablate/.
`beta` compares beta = 0.2 with beta = 0 on both streams and prints the KL to the SFT
reference per stream over the run (the paper: without the penalty the model drifts and
forgets); `group` compares G = 2, 4, 8 at a fixed number of replies per step and prints
the fraction of groups whose rewards had no spread (zero advantage, no learning signal)
and the final held-out toy-judge score.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.demo import evaluate_checkpoint, stage_configs  # noqa: E402


def _ensure_prerequisites(workdir: Path) -> dict:
    from paras2s_jax.train import stages

    configs = stage_configs(workdir, fast=False)
    for name in ("sft", "reward"):
        cfg = configs[name]
        if not (Path(cfg.workdir) / "results.json").exists():
            print(f"== prerequisite stage {name}: {cfg.workdir}", flush=True)
            stages.get(cfg.stage)(cfg)
    return configs


def _run(configs: dict, name: str, steps: int, **grpo_fields) -> tuple[list[dict], float]:
    """One GRPO run with `grpo_fields` changed; (per-step metrics, held-out score)."""
    from paras2s_jax.train import stages

    cfg = configs["grpo"].copy_and_resolve_references()
    root = Path(configs["grpo"].workdir).parent / "ablate" / f"{name}_steps{steps}"
    cfg.workdir = str(root)
    cfg.train.total_steps, cfg.train.save_every = steps, steps
    cfg.optimizer.decay_steps = steps
    for key, value in grpo_fields.items():
        setattr(cfg.grpo, key, value)
    if not (root / "results.json").exists():
        print(f"== GRPO {name}: {root}", flush=True)
        stages.get("grpo")(cfg)
    history = [json.loads(x) for x in (root / "metrics.jsonl").read_text().splitlines()]
    score = evaluate_checkpoint(configs, root / "checkpoints" / str(steps))["overall"]
    return history, score


def beta_sweep(configs: dict, steps: int) -> None:
    rows = {}
    for beta in (0.2, 0.0):
        history, score = _run(configs, f"beta_{beta:g}", steps, beta_text=beta, beta_audio=beta)
        rows[beta] = (history, score)
    marks = sorted({max(1, steps // 4), steps // 2, steps})
    print(f"\nKL(policy || SFT reference) per stream, k3 estimate, {steps} GRPO steps")
    print("| beta | stream | " + " | ".join(f"step {m}" for m in marks) + " | held-out score |")
    print("|---" * (len(marks) + 3) + "|")
    for beta, (history, score) in rows.items():
        for stream in ("text", "audio"):
            kl = [history[m - 1][f"kl_{stream}"] for m in marks]
            print(f"| {beta:g} | {stream} | " + " | ".join(f"{v:.4f}" for v in kl)
                  + f" | {score:.3f} |")


def group_sweep(configs: dict, steps: int) -> None:
    replies = configs["grpo"].grpo.query_batch * configs["grpo"].grpo.group_size
    print_rows = []
    for g in (2, 4, 8):
        history, score = _run(configs, f"group_{g}", steps, group_size=g,
                              query_batch=replies // g)
        zero = sum(h["zero_spread_groups"] for h in history) / len(history)
        print_rows.append((g, replies // g, zero, score))
    print(f"\nGroup size sweep: {replies} replies per step, {steps} GRPO steps")
    print("| G | prompts per step | zero-spread groups (mean over steps) | held-out score |")
    print("|---|---|---|---|")
    for g, b, zero, score in print_rows:
        print(f"| {g} | {b} | {zero:.3f} | {score:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", choices=("beta", "group"))
    parser.add_argument("--workdir", default="/tmp/paras2s/demo")
    parser.add_argument("--steps", type=int, default=60, help="GRPO steps per setting")
    args = parser.parse_args()
    configs = _ensure_prerequisites(Path(args.workdir))
    (beta_sweep if args.sweep == "beta" else group_sweep)(configs, args.steps)


if __name__ == "__main__":
    main()
