"""GRPO's three models on one shared base, and the stage's jitted functions.

The policy, the frozen reference (the SFT model) and the reward model (the SFT model
plus its own LoRA adapters) all start from the same weights. Keeping one copy:
- LoRA policy (`grpo.lora.rank > 0`): the base is frozen; the policy is base + policy
  adapters and the reference is the same base with the adapters off (zero adapters,
  so the reference costs no memory). The paper's RL rate 5e-4 is a typical adapter rate.
- full fine-tuning (`rank = 0`): the reference is a copy of the initial policy stored
  in the compute dtype (bf16 at 7B): every matmul casts its weights to that dtype, so
  the copy gives exactly the log-probabilities of the fp32 master weights.
- the reward model keeps only its adapters; its base is the reference's weights when
  they are equal to the ones it was trained on (checked), else its own copy.
Frozen weights are always arguments of the jitted functions, never closed over.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from paras2s_jax import sharding
from paras2s_jax.model.lora import LoRAConfig
from paras2s_jax.sampling import SamplingConfig, bucket_length
from paras2s_jax.train import grpo_update, plan, trainer
from paras2s_jax.train.grpo import STREAMS
from paras2s_jax.train.step import micro_batches, unmicro


def policy_adapters(cfg: ml_collections.ConfigDict) -> LoRAConfig | None:
    """The policy's LoRA adapters (`grpo.lora`), or None to fine-tune every weight."""
    lc = cfg.grpo.lora
    if lc.rank <= 0:
        return None
    return LoRAConfig(rank=lc.rank, alpha=lc.alpha, targets=tuple(lc.targets),
                      within=tuple(lc.get("within", ())))


def reference_params(run: trainer.Run, lora: bool) -> nnx.State:
    """What to merge with `run.graphdef` and `run.rest` to get the reference model."""
    params = run.state["params"]
    if lora:  # adapters off: B = 0 makes every adapter's update exactly zero
        fn = lambda p: jax.tree.map(jnp.zeros_like, p)  # noqa: E731
    else:
        dtype = run.model_config.compute_dtype
        fn = lambda p: jax.tree.map(lambda x: x.astype(dtype), p)  # noqa: E731
    shardings = run.shardings["params"]
    if isinstance(jax.tree.leaves(params)[0], jax.ShapeDtypeStruct):
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            jax.eval_shape(fn, params), shardings)
    return jax.jit(fn, out_shardings=shardings)(params)


def base_weights(run: trainer.Run, reference: nnx.State, lora: bool) -> nnx.State:
    """The shared frozen base: the policy's frozen rest (LoRA) or the reference copy."""
    return nnx.State.merge(run.rest, reference) if not lora else run.rest


@jax.jit
def _max_abs_difference(a: nnx.State, b: nnx.State) -> jax.Array:
    diffs = jax.tree.map(lambda x, y: jnp.max(jnp.abs(x.astype(jnp.float32)
                                                      - y.astype(jnp.float32))), a, b)
    return jnp.max(jnp.stack(jax.tree.leaves(diffs)))


def share_reward_base(reward_model: nnx.Module, base: nnx.State) -> tuple[nnx.Module, bool]:
    """(the reward model on `base`'s arrays, True) when its own base equals `base`
    (cast to `base`'s dtypes), else (the reward model unchanged, False)."""
    graphdef, adapters, own = nnx.split(reward_model, nnx.LoRAParam, ...)
    own_flat, base_flat = dict(nnx.to_flat_state(own)), dict(nnx.to_flat_state(base))
    if set(own_flat) != set(base_flat) or any(
            own_flat[k].shape != base_flat[k].shape for k in own_flat):
        return reward_model, False
    if float(_max_abs_difference(own, base)) != 0.0:
        return reward_model, False
    return nnx.merge(graphdef, adapters, base), True


def build_log_probs(run: trainer.Run, sampling: SamplingConfig,
                    micro: int = 1, group: int = 1) -> sharding.mesh_jit:
    """`(params, rest, batch) -> reply log-probs and entropies` of the policy's graph
    (old log-probs with the policy's params, reference ones with `reference_params`),
    the rows in `micro` micro-batches one after another (each still split over the mesh);
    `group`: consecutive rows sharing a prompt, kept whole (`grpo_update.prompt_rows`)."""
    def one(params, rest, batch):
        model = nnx.merge(run.graphdef, params, rest)
        return run.policy.reply_logprobs(model, batch, sampling, with_entropy=True,
                                         group=group)

    def log_probs(params, rest, batch):
        if micro == 1:
            return one(params, rest, batch)
        out = jax.lax.map(lambda b: one(params, rest, b), micro_batches(batch, micro, group))
        return jax.tree.map(lambda x: unmicro(x, group), out)

    return sharding.mesh_jit(log_probs, run.mesh)


def planned(cfg: ml_collections.ConfigDict) -> plan.StagePlan:
    """GRPO's jitted functions with abstract sharded arguments, for `launch/plan.py`:
    rollout (prefill + decode), old and reference log-probs, reward scoring, update.
    Prompts take the columns the stage pads its longest allowed prompt to
    (`data.max_prompt_len`, which it enforces); replies `max_new_tokens` columns."""
    adapters = policy_adapters(cfg)
    run = trainer.setup(cfg, abstract=True, adapters=adapters)
    mesh, mc = run.mesh, run.model_config
    sampling = grpo_update.sampling_config(cfg)
    rows = cfg.grpo.query_batch * cfg.grpo.group_size
    prompt = bucket_length(cfg.data.max_prompt_len, sampling.prompt_bucket)
    reply = sampling.max_new_tokens
    total = prompt + reply
    reference = reference_params(run, adapters is not None)
    policy, heard = run.policy, cfg.data.whisper_features
    seq = plan.abstract_batch(policy.batch_spec("rollout", rows, prompt, heard, reply), mesh)
    # the update's batch: the rollout, the old / reference log-probs the stage adds (as
    # the sampler's), the advantages
    batch = {**seq, **{f"{name}_{s}_logprobs": seq[f"sampler_{s}_logprobs"]
                       for name in ("old", "ref") for s in STREAMS},
             "advantages": plan.abstract((rows,), np.float32, mesh)}
    sampled = rows // cfg.grpo.rollout_micro_batches  # rows of one sampler call
    prompts = plan.abstract_batch(policy.batch_spec("prompt", sampled, prompt, heard), mesh)
    sampler = policy.sampler_program(run.model(), prompts, plan.abstract_key(mesh), sampling)

    rm_graph, rm_adapters, _ = nnx.split(
        trainer.abstract_model(cfg, mesh, LoRAConfig()), nnx.LoRAParam, ...)
    reward_model = nnx.merge(rm_graph, rm_adapters,
                             base_weights(run, reference, adapters is not None))
    view, suffix = cfg.reward.view, len(cfg.reward.suffix_ids)
    score_len = bucket_length(policy.reward_columns(prompt, reply, suffix, view), 16)
    scored = plan.abstract_batch(policy.batch_spec("reward", rows, score_len, heard, view=view),
                                 mesh)
    micro = cfg.grpo.forward_micro_batches
    scoring = policy.reward_digit_program(reward_model, scored, tuple(cfg.reward.digit_ids),
                                          micro)
    log_probs = build_log_probs(run, sampling, micro, grpo_update.prompt_rows(cfg, micro))
    kind = f"LoRA r{adapters.rank} policy" if adapters else "full policy"
    functions = [
        plan.Planned(f"rollout {sampled} rows, prompt {prompt} + {reply} steps", sampler.fn,
                     sampler.args, sampled * total, 2, mesh=mesh, unknown_trip=reply,
                     static_kwargs=sampler.static,
                     note="decode loop counted at max_new_tokens steps"),
        plan.Planned(f"old log-probs {rows}x{total}", log_probs,
                     (run.state["params"], run.rest, seq), rows * total, 2),
        plan.Planned(f"reference log-probs {rows}x{total}", log_probs,
                     (reference, run.rest, seq), rows * total, 2),
        plan.Planned(f"reward scoring {rows}x{score_len}", scoring.fn, scoring.args,
                     rows * score_len, 2, mesh=mesh, static_kwargs=scoring.static),
        plan.Planned(f"GRPO update {rows}x{total}, accum {cfg.optimizer.accum_steps}, {kind}",
                     grpo_update.build_step(cfg, run, sampling),
                     (run.state, batch, run.rest), rows * total, 6),
    ]
    n = plan.matmul_params(nnx.state(reward_model, nnx.Param)) - plan.matmul_params(
        nnx.state(reward_model, nnx.LoRAParam))
    return plan.StagePlan(functions, n, mesh, mc)
