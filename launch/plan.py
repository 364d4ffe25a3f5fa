"""Compiled memory plan of a stage: does every jitted function fit the devices?

    python launch/plan.py --config configs/sft.py:kimi_audio_7b --devices 8 [--budget_gb 60]

compiles each jitted function the config's stage runs (SFT: the train step and the eval
loss; reward: the train step, the held-out eval forward and the scoring forward GRPO
runs; GRPO: rollout, old/reference log-probs, reward scoring and the update) abstractly,
with the shardings the stage assigns, on the configured mesh, and prints per-device
argument / output / temporary memory, compiled FLOPs, collective traffic and a time
estimate from them (compute and communication; the assumptions are flags, stated in the
header line). Exits with status 1 when a function's peak exceeds the budget. Either model
family (`config.model.family`, e.g. `configs/sft.py:qwen25_omni_7b`): the batches' shapes
come from the model's policy (`SpeechPolicy.batch_spec`).
`--devices N` fakes N CPU devices (no accelerator needed; the CPU compiler upcasts bf16
matmuls and schedules conservatively, so it over-estimates a GPU); `--devices 0` plans
on the machine's own accelerators. `--markdown` prints only the header line and the
table (no compile progress), as docs/plans.md shows it.
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
_LENGTH = flags.DEFINE_integer("length", 0, "SFT/RM padded row length (default: the largest "
                               "bucket); GRPO reads config.data.max_prompt_len instead")
_ONLY = flags.DEFINE_list("only", [], "plan only functions whose name contains one of these")
_PEAK = flags.DEFINE_float("peak_tflops", 989.0, "per-device dense matmul peak, TFLOP/s "
                           "(H100 SXM bf16)")
_UTIL = flags.DEFINE_float("utilisation", 0.4, "fraction of the peak the compiled matmuls reach")
_LINK = flags.DEFINE_float("link_gb_s", 450.0, "bandwidth one device sends collectives at, "
                           "GB/s (H100 NVLink)")
_MARKDOWN = flags.DEFINE_bool("markdown", False, "print only the header line and the table")

# stage -> the module whose `planned(cfg[, length])` lists the stage's jitted functions
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

    from paras2s_jax.model.families import family_of
    from paras2s_jax.train import plan

    if cfg.stage not in _PLANS:
        raise app.UsageError(f"config.stage={cfg.stage!r} has no plan; known: {list(_PLANS)}")
    if cfg.stage == "grpo" and _LENGTH.value:
        raise app.UsageError("--length does not apply to GRPO: the prompt columns come from "
                             "config.data.max_prompt_len (e.g. --config.data.max_prompt_len=1024)")
    module = importlib.import_module(_PLANS[cfg.stage])
    sp = module.planned(cfg) if cfg.stage == "grpo" else module.planned(cfg, _LENGTH.value or None)
    planned = sp.functions
    if _ONLY.value:
        planned = [p for p in planned if any(o in p.name for o in _ONLY.value)]
    n, mc, devices = sp.matmul_params, sp.model_config, jax.device_count()
    hw = plan.Hardware(_PEAK.value * 1e12, _UTIL.value, _LINK.value * 1e9)
    print(f"{cfg.stage}: mesh {dict(sp.mesh.shape)} on {devices} x "
          f"{jax.devices()[0].device_kind}; model {family_of(mc).describe(mc)}, "
          f"N = {n / 1e9:.2f}B matmul parameters; budget {_BUDGET.value:g} GB per device; "
          f"{hw.describe()}.\n", flush=True)

    def report(row: plan.PlanRow) -> None:
        if not _MARKDOWN.value:
            print(f"  compiled {row.name} in {row.compile_s:.0f} s: peak {row.peak_gb:.1f} GB",
                  flush=True)

    rows = plan.run_plan(planned, n, report)
    print(plan.format_rows(rows, devices, _BUDGET.value, hw))
    over = [r.name for r in rows if r.peak_gb > _BUDGET.value]
    if over:
        print(f"over budget: {', '.join(over)}")
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
