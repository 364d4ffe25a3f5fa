"""GRPO math for two token streams: advantages, k3 KL, clipped objective, aggregation.

Per query, G replies are sampled and scored; rewards become group-normalised
advantages A_i = (r_i - mean_G r) / (std_G r + eps) (std with ddof=1, as tunix and
verl). A group whose rewards are all equal has A = 0 exactly: it contributes no policy
gradient (only the KL term) and is counted as a zero-spread group.

For every chosen token of stream s (text, audio), with logp the current policy's,
old the rollout policy's and ref the frozen reference's log-probability:
    ratio  = exp(logp - old)                     (logp - old clamped to +-20)
    pg     = -min(ratio * A, clip(ratio, 1 - eps_clip, 1 + eps_clip) * A)
    k3     = exp(ref - logp) - (ref - logp) - 1      (>= 0; ref - logp clamped to +-20)
    loss_s = aggregate(pg + beta_s * k3)
and loss = sum_s weight_s * loss_s. With one update per rollout the rollout policy is the
current one: old = stop_gradient(logp), so ratio = 1 in value and the gradient is the
plain policy gradient (as TRL and tunix do); `old` is only computed when mu > 1.
Aggregation (config `aggregation`):
    "token_mean"    : per stream, mean over all chosen tokens of the batch. Long replies
                      weigh by their length; audio (12.5 tokens/s) is not drowned out
                      by text because each stream has its own mean. (default)
    "sequence_mean" : per stream, mean over each reply's tokens, then over replies
                      (the original GRPO paper; short replies weigh more per token).
Losses return (sum, denominator) per stream so accumulation keeps a true mean: the
training step (`train/grpo_update.py`) takes each stream's sums from `stream_terms` and
divides them by `stream_denominator` over the whole batch, which is `dual_stream_loss` on
that batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

STREAMS = ("text", "audio")
_KL_CLAMP = 20.0
_LOG_RATIO_CLAMP = 20.0  # exp(20) ~ 5e8: finite in float32, far outside any clip range


@dataclasses.dataclass(frozen=True)
class GRPOLossConfig:
    """Coefficients of the dual-stream GRPO objective."""

    clip_eps: float = 0.2
    beta_text: float = 0.2  # KL weight on the text stream (paper: 0.2 on both)
    beta_audio: float = 0.2
    weight_text: float = 1.0  # stream weights in the summed loss
    weight_audio: float = 1.0
    aggregation: str = "token_mean"  # or "sequence_mean"

    def __post_init__(self) -> None:
        if self.aggregation not in ("token_mean", "sequence_mean"):
            raise ValueError(f"GRPOLossConfig.aggregation must be 'token_mean' or "
                             f"'sequence_mean', got {self.aggregation!r}")
        if self.clip_eps <= 0:
            raise ValueError("GRPOLossConfig.clip_eps must be > 0")

    def beta(self, stream: str) -> float:
        return self.beta_text if stream == "text" else self.beta_audio

    def weight(self, stream: str) -> float:
        return self.weight_text if stream == "text" else self.weight_audio


def group_advantages(
    rewards: np.ndarray | jax.Array, group_size: int, eps: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
    """(advantages float32[N], zero_spread bool[N // G]) for rows grouped G at a time."""
    r = jnp.asarray(rewards, jnp.float32).reshape(-1, group_size)
    centred = r - r.mean(axis=1, keepdims=True)
    std = r.std(axis=1, ddof=1, keepdims=True) if group_size > 1 else jnp.zeros_like(r[:, :1])
    zero_spread = jnp.all(centred == 0.0, axis=1)
    adv = jnp.where(zero_spread[:, None], 0.0, centred / (std + eps))
    return adv.reshape(-1), zero_spread


def group_spread(rewards: np.ndarray, group_size: int) -> dict[str, float]:
    """How much learning signal a step's rewards carry: the fraction of groups with no
    spread, the mean within-group reward std (ddof 1, as the advantages) and the mean
    |advantage| over all rows."""
    adv, zero = group_advantages(rewards, group_size)
    r = np.asarray(rewards, np.float64).reshape(-1, group_size)
    std = r.std(axis=1, ddof=1) if group_size > 1 else np.zeros(len(r))
    return {"zero_spread_groups": float(np.mean(np.asarray(zero))),
            "reward_group_std": float(np.mean(std)),
            "advantage_abs_mean": float(np.mean(np.abs(np.asarray(adv))))}


def k3_kl(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Per-token k3 estimate of KL(policy || reference); >= 0, unbiased, low variance."""
    delta = jnp.clip(ref_logp.astype(jnp.float32) - logp.astype(jnp.float32),
                     -_KL_CLAMP, _KL_CLAMP)
    return jnp.exp(delta) - delta - 1.0


def clipped_objective(
    logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, clip_eps: float
) -> tuple[jax.Array, jax.Array]:
    """(per-token policy loss [N, T], clipped indicator [N, T]); advantages: [N].

    The log-ratio is clamped: an overflowing exp would make the loss or its gradient
    non-finite and the whole update would be skipped.
    """
    ratio = jnp.exp(jnp.clip(logp - old_logp, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    return -jnp.minimum(unclipped, clipped), clipped < unclipped


def stream_denominator(mask: jax.Array, how: str) -> jax.Array:
    """What a stream's summed loss is divided by: its chosen tokens ("token_mean") or
    its replies with at least one chosen token ("sequence_mean")."""
    per_row = jnp.sum(mask.astype(jnp.float32), axis=1)
    return jnp.sum(per_row) if how == "token_mean" else jnp.sum(per_row > 0).astype(jnp.float32)


def aggregate(values: jax.Array, mask: jax.Array, how: str) -> tuple[jax.Array, jax.Array]:
    """(sum, denominator) of masked per-token values [N, T] under an aggregation mode."""
    mask = mask.astype(jnp.float32)
    if how == "token_mean":
        return jnp.sum(values * mask), stream_denominator(mask, how)
    per_row = jnp.sum(values * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
    return jnp.sum(per_row), stream_denominator(mask, how)  # rows without tokens add 0


def stream_loss(
    logp: jax.Array,
    old_logp: jax.Array | None,
    ref_logp: jax.Array,
    mask: jax.Array,
    advantages: jax.Array,
    beta: float,
    config: GRPOLossConfig,
) -> tuple[tuple[jax.Array, jax.Array], dict[str, jax.Array]]:
    """((sum, denominator), metrics) of one stream's GRPO loss.

    old_logp None: the rollout policy is the current one (one update per rollout), so
    old = stop_gradient(logp).
    """
    # Zero the unchosen positions first: padding may hold anything, and exp() of it
    # would turn into inf * 0 = NaN (in the value or its gradient).
    logp, ref_logp = (jnp.where(mask, x, 0.0) for x in (logp, ref_logp))
    old_logp = (jax.lax.stop_gradient(logp) if old_logp is None
                else jnp.where(mask, old_logp, 0.0))
    pg, was_clipped = clipped_objective(logp, old_logp, advantages, config.clip_eps)
    kl = k3_kl(logp, ref_logp)
    total = aggregate(pg + beta * kl, mask, config.aggregation)
    m = mask.astype(jnp.float32)
    count = jnp.maximum(m.sum(), 1.0)
    metrics = {
        "kl": jnp.sum(kl * m) / count,
        "clip_fraction": jnp.sum(was_clipped * m) / count,
        "policy_loss": jnp.sum(pg * m) / count,
        "tokens": m.sum(),
    }
    return total, metrics


def stream_terms(
    logps: dict[str, jax.Array],
    old_logps: dict[str, jax.Array] | None,
    ref_logps: dict[str, jax.Array],
    masks: dict[str, jax.Array],
    advantages: jax.Array,
    config: GRPOLossConfig,
) -> tuple[dict[str, tuple[jax.Array, jax.Array]], dict[str, jax.Array]]:
    """Each stream's (sum, denominator) under its own beta, and per-stream metrics
    (`kl_text`, `clip_fraction_audio`, ...)."""
    terms: dict[str, tuple[jax.Array, jax.Array]] = {}
    metrics: dict[str, jax.Array] = {}
    for s in STREAMS:
        terms[s], m = stream_loss(
            logps[s], None if old_logps is None else old_logps[s], ref_logps[s], masks[s],
            advantages, config.beta(s), config
        )
        metrics.update({f"{k}_{s}": v for k, v in m.items()})
    return terms, metrics


def weighted_total(sums: dict[str, jax.Array], denominators: dict[str, jax.Array],
                   config: GRPOLossConfig) -> jax.Array:
    """sum_s weight_s * sum_s / denominator_s (an empty stream's denominator counts as 1)."""
    return sum(config.weight(s) * sums[s] / jnp.maximum(denominators[s], 1.0) for s in STREAMS)


def dual_stream_loss(
    logps: dict[str, jax.Array],
    old_logps: dict[str, jax.Array] | None,
    ref_logps: dict[str, jax.Array],
    masks: dict[str, jax.Array],
    advantages: jax.Array,
    config: GRPOLossConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The weighted sum over streams of their aggregated losses, and per-stream metrics."""
    terms, metrics = stream_terms(logps, old_logps, ref_logps, masks, advantages, config)
    return weighted_total({s: t[0] for s, t in terms.items()},
                          {s: t[1] for s, t in terms.items()}, config), metrics


def entropy(logits: jax.Array, temperature: float) -> jax.Array:
    """Entropy [..] of softmax(logits / T) over the last axis (T = 1 when greedy)."""
    scale = temperature if temperature > 0 else 1.0
    logp = jax.nn.log_softmax(logits.astype(jnp.float32) / scale, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
