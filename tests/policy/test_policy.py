"""The speech-policy interface: dispatch by config class, every registered policy
implements the whole protocol, stage code never names a model family, and Kimi-Audio's
policy is the sampler, the rollout forwards and the reward model's reading of a reply."""

import ast
import dataclasses
import inspect
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from paras2s_jax import layout
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.policy import KimiAudioPolicy, SpeechPolicy, policy_for, registered
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.train.reward import reward_input, reward_reply
from paras2s_jax.train.rollout import score_replies

ROOT = Path(__file__).resolve().parents[2]
# Modules that run the stages: they reach a model only through its policy.
STAGE_MODULES = ("train/sft_stage.py", "train/reward_stage.py", "train/grpo_stage.py",
                 "train/grpo_update.py", "train/distill.py", "train/select.py",
                 "train/grpo_audit.py", "toyworld/evaluate.py")
# Kimi-Audio's layout, sampler and rollout forwards (GRPO's judge helper is generic).
MODEL_SPECIFIC = ("paras2s_jax.layout", "paras2s_jax.model.kimi_audio",
                  "paras2s_jax.sampling.generate", "paras2s_jax.sampling.decode_program",
                  *(f"paras2s_jax.train.rollout.{name}" for name in (
                      "rollout_batch", "reply_logprobs", "reply_hidden", "score_replies",
                      "pad_prompts", "reward_forward")))


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(SpeechPolicy).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def test_policy_for_picks_by_config_class_and_names_what_is_unknown():
    assert isinstance(policy_for(tiny()), KimiAudioPolicy)

    @dataclasses.dataclass(frozen=True)
    class OtherConfig:
        layers: int = 1

    with pytest.raises(TypeError) as err:
        policy_for(OtherConfig())
    assert "no speech policy is registered for OtherConfig" in str(err.value)
    assert "KimiAudioConfig" in str(err.value)


@pytest.mark.parametrize("policy_class", sorted(set(registered().values()), key=str))
def test_every_registered_policy_implements_the_whole_protocol(policy_class):
    methods = _protocol_methods()
    assert len(methods) >= 9
    for name, wanted in methods.items():
        own = getattr(policy_class, name, None)
        assert own is not None, f"{policy_class.__name__} lacks {name}"
        assert list(inspect.signature(own).parameters) == list(wanted.parameters), name
    assert set(policy_class.streams) == {"text", "audio"}  # GRPO's per-stream terms


def test_stage_code_reaches_the_model_only_through_its_policy():
    for rel in STAGE_MODULES:
        path = ROOT / "paras2s_jax" / rel
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] * (node.module in MODEL_SPECIFIC) + [
                    f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith(MODEL_SPECIFIC) for n in names), (rel, names)
        words = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not any("kimi" in w.lower() for w in words), (rel, sorted(words))


@pytest.fixture(scope="module")
def sampled():
    cfg = tiny()
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    policy = policy_for(cfg)
    records = [{"id": "a", "prompt_audio": [1, 2, 3]},
               {"id": "b", "prompt_text": [9], "prompt_audio": list(range(7))}]
    sampling = SamplingConfig(max_new_tokens=10, text_temperature=1.0, text_top_k=0,
                              audio_temperature=0.8, num_samples=2)
    prompts = policy.prompt_batch(records, sampling.prompt_bucket, rows=3)
    out = policy.sample(model, prompts, jax.random.key(0), sampling)
    return cfg, model, policy, records, sampling, prompts, out


def test_prompt_batch_lays_out_records_and_pads_rows_with_the_first(sampled):
    cfg, _, policy, records, _, prompts, out = sampled
    assert len(prompts) == 2 and prompts.inputs["text"].shape == (3, 16)
    for row, rec in enumerate(records + records[:1]):
        own = layout.record_prompt(rec, cfg)
        assert policy.prompt_length(rec) == len(own)
        np.testing.assert_array_equal(prompts.inputs["audio"][row, -len(own):], own.audio)
        assert prompts.inputs["attention_mask"][row].sum() == len(own)
    assert out.text.shape == (6, 10)  # the padding row is sampled too, G = 2 each


def test_replies_rollout_logprobs_and_reward_scores_are_the_models(sampled):
    cfg, model, policy, _, sampling, prompts, out = sampled
    replies = policy.replies(out)
    assert replies == [layout.parse_reply(out.text[r], out.audio[r], cfg) for r in range(6)]
    trimmed = dataclasses.replace(prompts, inputs={k: v[:2] for k, v in prompts.inputs.items()})
    rows = jax.tree.map(lambda x: x[:4], out)
    batch = policy.rollout_batch(trimmed, rows, 2)
    lp = nnx.jit(lambda m, b: policy.reply_logprobs(m, b, sampling, group=2))(model, batch)
    for s in policy.streams:
        mask = batch[f"{s}_mask"]
        assert mask.any()
        np.testing.assert_allclose(np.asarray(lp[s])[mask], batch[f"sampler_{s}_logprobs"][mask],
                                   atol=1e-5)
    digits, suffix = [50, 51, 52, 53, 54], [40]
    scores = policy.reward_scores(model, trimmed, rows, 2, suffix, digits, "audio")
    np.testing.assert_allclose(scores, score_replies(model, trimmed.layouts, rows, 2, suffix,
                                                     digits, "audio"), atol=1e-6)


def test_reward_inputs_read_the_reply_under_the_view(sampled):
    cfg, model, policy, records, _, _, _ = sampled
    scored = [{**records[1], "reply_text": [5, 6], "reply_audio": [7, 8, 9], "score": 4}]
    batch = policy.reward_inputs(scored, [40], "text", [32, 64], rows=2)
    seq = reward_input(layout.record_prompt(scored[0], cfg),
                       reward_reply([5, 6], [7, 8, 9], cfg, "text"), [40], cfg)
    assert batch["text"].shape == (2, 32)
    for row in range(2):
        np.testing.assert_array_equal(batch["text"][row, -len(seq):], seq.text)
        np.testing.assert_array_equal(batch["audio"][row, -len(seq):], seq.audio)
    logits = policy.reward_logits(model, batch)
    digits = policy.reward_digit_logits(model, batch, [50, 51, 52, 53, 54])
    np.testing.assert_allclose(np.asarray(digits),
                               np.asarray(logits[:, -1, 50:55], np.float32), atol=1e-5)
