"""The GRPO update as training runs it: settings read from the config, and the jitted step.

The step's objective is `grpo.dual_stream_loss` of the policy's reply log-probabilities:
each stream's sum comes from `grpo.stream_terms` (its own beta) and is divided by
`grpo.stream_denominator` over the whole batch (so gradient accumulation keeps the
batch's mean), then weighted by `grpo.weight_text` / `grpo.weight_audio`.
The GRPO stage (`grpo_stage.py`) and its plan (`grpo_models.planned`) both build on this
module; it imports neither.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from paras2s_jax import sharding
from paras2s_jax.policy import SpeechPolicy
from paras2s_jax.sampling import SamplingConfig, sampling_from_settings
from paras2s_jax.train import step as step_lib
from paras2s_jax.train import trainer
from paras2s_jax.train.grpo import STREAMS, GRPOLossConfig, stream_denominator, stream_terms


def loss_config(cfg: ml_collections.ConfigDict) -> GRPOLossConfig:
    """The loss coefficients of `config.grpo`."""
    g = cfg.grpo
    return GRPOLossConfig(clip_eps=g.clip_eps, beta_text=g.beta_text, beta_audio=g.beta_audio,
                          weight_text=g.weight_text, weight_audio=g.weight_audio,
                          aggregation=g.aggregation)


def sampling_config(cfg: ml_collections.ConfigDict) -> SamplingConfig:
    """Rollout sampling; refuses greedy streams (temperature 0, or top-k 1: the tokens
    are argmaxes while their log-probabilities are taken over the whole vocabulary, which
    is not a policy-gradient estimator, and the G replies of a prompt barely differ)."""
    settings = cfg.grpo.sampling
    for stream in STREAMS:
        if getattr(settings, f"{stream}_temperature") <= 0:
            raise ValueError(f"config.grpo.sampling.{stream}_temperature must be > 0: GRPO "
                             "trains on sampled tokens; greedy ones have no policy gradient")
        if getattr(settings, f"{stream}_top_k") == 1:
            raise ValueError(f"config.grpo.sampling.{stream}_top_k = 1 samples greedily; "
                             "GRPO trains on sampled tokens: use 0 (whole vocabulary) or > 1")
    return sampling_from_settings(settings, cfg.grpo.group_size)


def per_update_schedule(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `cfg` whose optimizer schedule counts updates (mu per rollout step), so
    warm-up and decay given in rollout steps last as long as `train.total_steps` says."""
    out = cfg.copy_and_resolve_references()
    mu = cfg.grpo.updates_per_rollout
    if mu < 1:
        raise ValueError(f"config.grpo.updates_per_rollout must be >= 1, got {mu}")
    with out.unlocked():
        out.optimizer.warmup_steps = cfg.optimizer.warmup_steps * mu
        out.optimizer.decay_steps = cfg.optimizer.decay_steps * mu
    return out


def prompt_rows(cfg: ml_collections.ConfigDict, parts: int) -> int:
    """Consecutive rows sharing one prompt in each of `parts` micro-batches of a rollout
    batch: the whole group (G) when the prompts split evenly between the parts (each
    prompt's columns then run once for its G replies: `rollout.reply_hidden`), else 1."""
    return cfg.grpo.group_size if cfg.grpo.query_batch % parts == 0 else 1


def loss_fns(policy: SpeechPolicy, lcfg: GRPOLossConfig, sampling: SamplingConfig,
             group: int = 1):
    """(loss_fn, count_fn) of the GRPO objective for `step.build_train_step`, with the
    stream weights `{s: lcfg.weight(s)}`. The batch is a rollout batch with
    "advantages", "ref_{s}_logprobs" and, when several updates share a rollout,
    "old_{s}_logprobs" (without them the rollout policy is the current one); the
    log-probs are `policy.reply_logprobs`."""
    def loss_fn(model, batch, rng):
        del rng
        logps = policy.reply_logprobs(model, batch, sampling, with_entropy=True, group=group)
        masks = {s: batch[f"{s}_mask"] for s in STREAMS}
        old = ({s: batch[f"old_{s}_logprobs"] for s in STREAMS}
               if "old_text_logprobs" in batch else None)
        terms, metrics = stream_terms(logps, old, {s: batch[f"ref_{s}_logprobs"]
                                                   for s in STREAMS},
                                      masks, batch["advantages"], lcfg)
        aux = {}
        for s in STREAMS:
            aux[f"clip_fraction_{s}"] = metrics[f"clip_fraction_{s}"]
            aux[f"kl_{s}"] = metrics[f"kl_{s}"]
            aux[f"entropy_{s}"] = jnp.sum(jax.lax.stop_gradient(logps[f"entropy_{s}"])
                                          * masks[s]) / jnp.maximum(jnp.sum(masks[s]), 1)
        return terms, aux

    def count_fn(batch):
        return {s: stream_denominator(batch[f"{s}_mask"], lcfg.aggregation) for s in STREAMS}

    return loss_fn, count_fn


def build_step(cfg: ml_collections.ConfigDict, run: trainer.Run,
               sampling: SamplingConfig) -> sharding.mesh_jit:
    """The jitted GRPO update `(state, batch, rest) -> (state, metrics)`."""
    lcfg = loss_config(cfg)
    accum = cfg.optimizer.accum_steps
    group = prompt_rows(cfg, accum)
    loss_fn, count_fn = loss_fns(run.policy, lcfg, sampling, group)
    return trainer.jit_step(run, step_lib.build_train_step(
        run.graphdef, loss_fn, count_fn, {s: lcfg.weight(s) for s in STREAMS}, run.tx,
        run.schedule, accum, group))
