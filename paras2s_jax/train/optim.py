"""The optimizer: AdamW with linear warm-up + cosine decay and global-norm clipping."""

from __future__ import annotations

import dataclasses

import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW hyper-parameters (see configs/base.py for the meaning of each field)."""

    lr: float = 1e-5
    warmup_steps: int = 0
    decay_steps: int = 1000  # cosine length after warm-up
    end_lr_ratio: float = 0.1  # final lr = lr * end_lr_ratio
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # global-norm clip; 0 disables

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.decay_steps < 1:
            raise ValueError("optimizer.warmup_steps must be >= 0 and decay_steps >= 1")


def schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """Linear warm-up from 0 to `lr`, then cosine decay to `lr * end_lr_ratio`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.lr,
        peak_value=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.warmup_steps + cfg.decay_steps,
        end_value=cfg.lr * cfg.end_lr_ratio,
    )


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """Clip, then AdamW on the schedule."""
    adamw = optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                        weight_decay=cfg.weight_decay)
    if cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
    return adamw
