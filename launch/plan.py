"""Compiled memory plan of a stage: does every jitted function fit the devices?

    python launch/plan.py --config configs/sft.py:kimi_audio_7b --devices 8 [--budget_gb 60]

compiles each jitted function of the config's stage (SFT: the train step; reward: the
train step and the scoring forward; GRPO: rollout, old/reference log-probs, reward
scoring and the update) abstractly, with the shardings the stage assigns, on the
configured mesh, and prints per-device argument / output / temporary memory, FLOPs,
collective traffic and the step time implied at 40% MFU on H100s. Exits with status 1
when a function's peak exceeds the budget. `--devices N` fakes N CPU devices (no
accelerator needed; the CPU compiler upcasts bf16 matmuls and schedules conservatively,
so it over-estimates a GPU); `--devices 0` plans on the machine's own accelerators.
"""

from __future__ import annotations

import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<stage>.py:<preset>",
                                          lock_config=True)
_DEVICES = flags.DEFINE_integer("devices", 8, "fake this many CPU devices (0: the machine's)")
_BUDGET = flags.DEFINE_float("budget_gb", 60.0, "per-device memory budget, GB (1e9 bytes)")
_LENGTH = flags.DEFINE_integer("length", 0, "sequence length: SFT/RM rows (default: largest "
                               "bucket), GRPO prompts (default 512)")
_ONLY = flags.DEFINE_list("only", [], "plan only functions whose name contains one of these")

# stage -> the module whose `planned(cfg, length)` lists the stage's jitted functions
_PLANS = {"sft": "paras2s_jax.train.sft_stage", "reward": "paras2s_jax.train.reward_stage",
          "grpo": "paras2s_jax.train.grpo_models"}


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    if _DEVICES.value:
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={_DEVICES.value}")
    cfg = _CONFIG.value
    if cfg is None:
        raise app.UsageError("--config is required, e.g. --config configs/sft.py:kimi_audio_7b")
    import jax

    from paras2s_jax.train import plan

    if cfg.stage not in _PLANS:
        raise app.UsageError(f"config.stage={cfg.stage!r} has no plan; known: {list(_PLANS)}")
    sp = importlib.import_module(_PLANS[cfg.stage]).planned(cfg, _LENGTH.value or None)
    planned = sp.functions
    if _ONLY.value:
        planned = [p for p in planned if any(o in p.name for o in _ONLY.value)]
    n, mc, devices = sp.matmul_params, sp.model_config, jax.device_count()
    print(f"{cfg.stage}: mesh {dict(sp.mesh.shape)} on {devices} x "
          f"{jax.devices()[0].device_kind}; model {mc.num_layers}+{mc.mimo_layers} layers, "
          f"N = {n / 1e9:.2f}B matmul parameters; budget {_BUDGET.value:g} GB per device",
          flush=True)

    def report(row: plan.PlanRow) -> None:
        print(f"  compiled {row.name} in {row.compile_s:.0f} s: peak {row.peak_gb:.1f} GB",
              flush=True)

    rows = plan.run_plan(planned, n, report)
    print(plan.format_rows(rows, devices, _BUDGET.value))
    over = [r.name for r in rows if r.peak_gb > _BUDGET.value]
    if over:
        print(f"over budget: {', '.join(over)}")
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
