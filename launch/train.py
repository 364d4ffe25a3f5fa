"""One training entry point for every stage; the config's `stage` field picks it.

    python launch/train.py --config configs/sft.py:toy [--config.optimizer.lr=1e-3 ...]

Multi-host: every process runs the same command. The coordinator comes from
`--config.distributed.coordinator=host:port` (with `num_processes`, `process_id`), or
from the SLURM environment (see launch/slurm_example.sh); each process then reads its
share of every global batch. `--cpu_devices N` fakes N CPU devices (tests, demos).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<stage>.py:<preset>",
                                          lock_config=True)
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "fake this many CPU devices (0: off)")


def _init_distributed(cfg) -> None:
    """Join the multi-process job if one is configured or SLURM runs several tasks."""
    import jax

    d = cfg.distributed
    if d.coordinator:
        # Only the CPU client reads this; it must be set before any backend starts.
        jax.config.update("jax_cpu_collectives_implementation", d.cpu_collectives)
        jax.distributed.initialize(d.coordinator, num_processes=d.num_processes,
                                   process_id=d.process_id)
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()  # coordinator, size and rank from the SLURM env


def stage_extras(cfg) -> dict:
    """The stage's keyword arguments beyond its config: the benchmark pipeline's judge for
    distillation (`distill.scorer="bench"`) or for GRPO's reward audits (`audit.every > 0`
    with `audit.scorer="bench"`). The benchmark is handed to the stage here, so the
    library never imports it."""
    section = None
    if cfg.stage == "reward" and cfg.distill.scorer == "bench":
        section = "distill"
    elif cfg.stage == "grpo" and cfg.audit.every and cfg.audit.scorer == "bench":
        section = "audit"
    if section is None:
        return {}
    from bench.scoring.distill_judge import judge_from_config

    return {"judge": judge_from_config(cfg, section)}


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
    if _CPU_DEVICES.value:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={_CPU_DEVICES.value}")
    cfg = _CONFIG.value
    if cfg is None:
        raise app.UsageError("--config is required, e.g. --config configs/sft.py:toy")
    _init_distributed(cfg)

    from paras2s_jax.train import stages
    from paras2s_jax.train.inputs import InputMismatch, MissingInput

    extras = stage_extras(cfg)
    try:
        results = stages.get(cfg.stage)(cfg, **extras)
    except (MissingInput, InputMismatch) as err:  # one line: the path and the fix
        sys.exit(f"error: {err}")
    import jax

    if jax.process_index() == 0:
        print("results: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())),
              flush=True)


if __name__ == "__main__":
    app.run(main)
