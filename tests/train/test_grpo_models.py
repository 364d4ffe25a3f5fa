"""GRPO on one shared base: LoRA policy = merged full policy; reference = adapters off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import grpo as grpo_config
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.model.layers import Dense
from paras2s_jax.model.lora import LoRAConfig, attach_lora
from paras2s_jax.train import grpo_models, grpo_update, trainer
from paras2s_jax.train.rollout import reward_forward

ROWS, PROMPT, REPLY, G = 4, 6, 5, 2  # two prompts, G = 2 replies each


def _cfg(rank: int):
    cfg = grpo_config.get_config("toy")
    with cfg.unlocked():
        cfg.init.source = "fresh"
        cfg.workdir = "/tmp/paras2s/unused"
        cfg.grpo.lora.rank = rank
        cfg.grpo.lora.targets = ["q_proj", "v_proj", "up_proj"]
        cfg.grpo.group_size, cfg.grpo.query_batch = G, ROWS // G
    return cfg


def _batch(mc, seed=0):
    rng = np.random.default_rng(seed)
    n = PROMPT + REPLY
    batch = {
        "text": rng.integers(0, mc.text_vocab_size, (ROWS, n)).astype(np.int32),
        "audio": rng.integers(mc.audio_token_offset, mc.vocab_size, (ROWS, n)).astype(np.int32),
        "attention_mask": np.ones((ROWS, n), bool),
        "text_mask": rng.random((ROWS, REPLY)) < 0.7,
        "audio_mask": rng.random((ROWS, REPLY)) < 0.7,
        "advantages": rng.normal(size=ROWS).astype(np.float32),
    }
    batch["attention_mask"][:G, :2] = False
    for k in ("text", "audio"):  # a prompt's G rows share its columns, as in a rollout
        batch[k][:, :PROMPT] = np.repeat(batch[k][::G, :PROMPT], G, axis=0)
    for s in ("text", "audio"):
        batch[f"old_{s}_logprobs"] = -rng.random((ROWS, REPLY)).astype(np.float32) * 3
        batch[f"ref_{s}_logprobs"] = -rng.random((ROWS, REPLY)).astype(np.float32) * 3
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _merged(lora_run) -> nnx.State:
    """Full weights W + A·B·scale of the LoRA policy (what 'adapters merged' means)."""
    # Copies: a merged model's variables are the run's own, so edits would leak into it.
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
    model = nnx.merge(lora_run.graphdef, copy(lora_run.state["params"]), copy(lora_run.rest))
    for _, node in nnx.iter_graph(model):
        if isinstance(node, Dense) and node.lora is not None:
            delta = jnp.tensordot(node.lora.a[...], node.lora.b[...], axes=1) * node.lora.scale
            node.kernel[...] = node.kernel[...] + delta
    return nnx.state(model, nnx.Param)


@pytest.mark.slow
def test_lora_policy_step_equals_full_step_on_merged_weights_and_reference_is_the_base():
    lora_run = trainer.setup(_cfg(4), adapters=grpo_models.policy_adapters(_cfg(4)))
    full_run = trainer.setup(_cfg(0))
    base = full_run.state["params"]  # the same weights the LoRA policy starts from
    # Non-zero adapters, so the policy differs from the base.
    lora_run.state["params"] = jax.tree.map(
        lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape, x.dtype),
        lora_run.state["params"])
    merged = {k: v for k, v in nnx.to_flat_state(_merged(lora_run))
              if "lora" not in [str(p) for p in k]}
    full_run.state["params"] = nnx.from_flat_state(merged)
    sampling = grpo_update.sampling_config(_cfg(0))
    batch = _batch(lora_run.model_config)

    lp_lora = grpo_models.build_log_probs(lora_run, sampling)
    lp_full = grpo_models.build_log_probs(full_run, sampling)
    policy = lp_lora(lora_run.state["params"], lora_run.rest, batch)
    merged_lp = lp_full(full_run.state["params"], full_run.rest, batch)
    ref = lp_lora(grpo_models.reference_params(lora_run, lora=True), lora_run.rest, batch)
    base_lp = lp_full(base, full_run.rest, batch)
    for s in ("text", "audio"):
        np.testing.assert_allclose(policy[s], merged_lp[s], atol=2e-5)
        np.testing.assert_allclose(ref[s], base_lp[s], atol=1e-6)
        assert np.max(np.abs(np.asarray(policy[s]) - np.asarray(ref[s]))) > 1e-3

    before = jax.tree.map(np.asarray, lora_run.state["params"])
    _, m_lora = grpo_update.build_step(_cfg(4), lora_run, sampling)(
        lora_run.state, batch, lora_run.rest)
    _, m_full = grpo_update.build_step(_cfg(0), full_run, sampling)(
        full_run.state, batch, full_run.rest)
    np.testing.assert_allclose(float(m_lora["loss"]), float(m_full["loss"]), rtol=1e-5)
    assert float(m_lora["grad_norm"]) > 0 and int(m_lora["skipped"]) == 0
    assert len(jax.tree.leaves(before)) == 3 * 2 * 6  # only adapters train (a, b per target)


@pytest.mark.parametrize("same", [True, False])
def test_reward_model_shares_the_reference_base_only_when_equal(same):
    base = nnx.state(KimiAudio(tiny(), rngs=nnx.Rngs(0)), nnx.Param)
    rm = KimiAudio(tiny(), rngs=nnx.Rngs(0 if same else 5))
    attach_lora(rm, LoRAConfig(rank=2), rngs=nnx.Rngs(1))
    shared_model, shared = grpo_models.share_reward_base(rm, base)
    assert shared == same
    kernel = shared_model.lm_head.kernel[...]
    assert (kernel is base["lm_head"]["kernel"][...]) == same


def test_forward_micro_batches_give_the_same_scores_in_row_order():
    model = KimiAudio(tiny(), rngs=nnx.Rngs(2))
    b = _batch(model.config)
    args = (model, b["text"], b["audio"], b["attention_mask"], (50, 51, 52, 53, 54))
    whole = reward_forward(*args, 1)
    np.testing.assert_allclose(reward_forward(*args, 2), whole, atol=1e-6)
    assert len(set(np.round(np.asarray(whole), 5))) == ROWS  # a row swap would show
