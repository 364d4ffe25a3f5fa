"""Qwen2.5-Omni's speech policy on the tiny config (random weights): chat layout and toy
mel, sampling and replies, rollout log-probs equal to the sampler's, SFT cross-entropy
against a step-by-step hand computation, the reward model's reading of a reply."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from paras2s_jax.model.qwen_omni.decoder import OmniCache
from paras2s_jax.model.qwen_omni.model import QwenOmni, tiny
from paras2s_jax.model.qwen_omni.rope import audio_token_count
from paras2s_jax.model.qwen_omni.sampler import OmniSample
from paras2s_jax.model.qwen_omni.speech_reply import reply_part, reply_rows, talker_prompt
from paras2s_jax.policy import QwenOmniPolicy, policy_for
from paras2s_jax.policy.qwen_omni import OmniPolicySample
from paras2s_jax.policy.qwen_omni_data import SMALL_CHAT, read_records, render_codes_to_mel
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.train.data import DataError
from paras2s_jax.train.reward import expected_score

ATOL = 1e-5
RECORDS = [{"id": "a", "prompt_audio": [1, 2, 3], "reply_text": [5, 6, 7],
            "reply_audio": [10, 11, 12, 13]},
           {"id": "b", "prompt_text": [9, 8], "prompt_audio": [4, 5, 6, 7, 8],
            "reply_text": [20], "reply_audio": [30, 31]}]


def test_toy_mel_is_a_fixed_pattern_of_four_frames_per_code():
    mel = render_codes_to_mel([3, 7, 3], 128)
    assert mel.shape == (128, 12) and mel.dtype == np.float32
    np.testing.assert_array_equal(mel[:, 0:4], mel[:, 8:12])
    assert np.abs(mel[:, 0:4] - mel[:, 4:8]).max() > 0.1
    np.testing.assert_array_equal(mel, render_codes_to_mel([3, 7, 3], 128))
    assert audio_token_count(np.asarray([12]))[0] == 3  # one encoder token per code


@pytest.fixture(scope="module")
def setup():
    cfg = tiny()
    model = QwenOmni(cfg, rngs=nnx.Rngs(0))
    policy = QwenOmniPolicy(cfg, repetition_penalty=1.3)
    sampling = SamplingConfig(max_new_tokens=5, text_temperature=1.0, text_top_k=0,
                              audio_temperature=0.9, audio_top_k=0, num_samples=2)
    prompts = policy.prompt_batch(RECORDS, 16, rows=3)
    return cfg, model, policy, sampling, prompts


def test_prompt_batch_is_the_chat_layout_left_padded(setup):
    cfg, _, policy, _, prompts = setup
    t, chat = cfg.thinker, SMALL_CHAT
    assert isinstance(policy_for(cfg), QwenOmniPolicy)
    assert prompts.inputs["input_ids"].shape == (3, 32)  # 26 tokens -> 16 * 2
    assert prompts.inputs["mel"].shape == (3, 128, 32)  # 20 frames -> 2 encoder chunks
    for row, rec in enumerate(RECORDS + RECORDS[:1]):
        want = ([t.bos_token_id, chat.user, chat.newline, t.audio_start_token_id]
                + [t.audio_token_index] * len(rec["prompt_audio"]) + [t.audio_end_token_id]
                + rec.get("prompt_text", [])
                + [t.eos_token_id, chat.newline, t.bos_token_id, chat.assistant, chat.newline])
        assert policy.prompt_length(rec) == len(want)
        np.testing.assert_array_equal(prompts.inputs["input_ids"][row, -len(want):], want)
        assert prompts.inputs["attention_mask"][row].sum() == len(want)
        assert not prompts.inputs["attention_mask"][row, :-len(want)].any()
        frames = 4 * len(rec["prompt_audio"])
        np.testing.assert_array_equal(prompts.inputs["mel"][row, :, :frames],
                                      render_codes_to_mel(rec["prompt_audio"], 128))
        assert prompts.inputs["mel_mask"][row].sum() == frames


@pytest.fixture(scope="module")
def sampled(setup):
    cfg, model, policy, sampling, prompts = setup
    out = policy.sample(model, prompts, jax.random.key(0), sampling)
    return out


def test_sample_rows_are_prompt_major_and_finished_needs_both_streams(setup, sampled):
    cfg, _, policy, sampling, _ = setup
    s = sampled.sample
    assert s.text.shape == (6, 5) and s.codes.shape == (6, 20)
    np.testing.assert_array_equal(sampled.finished, s.text_finished & s.codec_finished)
    assert np.asarray(s.text_mask).any() and np.asarray(s.codec_mask).any()


def test_replies_drop_the_stop_ids():
    sample = OmniSample(
        text=np.array([[5, 101, 102], [6, 7, 8]]), text_mask=np.ones((2, 3), bool),
        text_logprobs=np.zeros((2, 3)), text_lengths=np.array([2, 3]),
        text_finished=np.array([True, False]),
        codes=np.array([[1, 2, 61, 62], [3, 62, 62, 62]]), codec_mask=np.ones((2, 4), bool),
        codec_logprobs=np.zeros((2, 4)), codec_lengths=np.array([4, 2]),
        codec_finished=np.array([False, True]))
    out = OmniPolicySample(sample)
    assert QwenOmniPolicy(tiny()).replies(out) == [([5], [1, 2, 61, 62]), ([6, 7, 8], [3])]
    np.testing.assert_array_equal(out.finished, [False, False])  # each lacks one stream's stop


def test_rollout_logprobs_equal_the_samplers_and_ignore_left_padding(setup, sampled):
    cfg, model, policy, sampling, prompts = setup
    batch = policy.rollout_batch(prompts, sampled, sampling.num_samples)
    assert batch["input_ids"].shape == (6, 32) and batch["mel"].shape[0] == 6
    lp = nnx.jit(lambda m, b: policy.reply_logprobs(m, b, sampling, with_entropy=True))(
        model, batch)
    for s in policy.streams:
        mask = batch[f"{s}_mask"]
        assert mask.sum() > 4
        err = np.abs(np.asarray(lp[s])[mask] - batch[f"sampler_{s}_logprobs"][mask]).max()
        print(f"{s}: sampler vs teacher-forced log-probs, max |diff| {err:.2e}")
        assert err <= ATOL
        assert (np.asarray(lp[f"entropy_{s}"])[mask] > 0).all()
    padded = dict(batch, input_ids=np.pad(batch["input_ids"], [(0, 0), (5, 0)],
                                          constant_values=cfg.thinker.pad_token_id),
                  attention_mask=np.pad(batch["attention_mask"], [(0, 0), (5, 0)]))
    again = nnx.jit(lambda m, b: policy.reply_logprobs(m, b, sampling))(model, padded)
    for s in policy.streams:
        np.testing.assert_allclose(np.asarray(again[s]), np.asarray(lp[s]), atol=ATOL)


def test_sample_in_parts_matches_one_call_per_part(setup, sampled):
    cfg, model, policy, sampling, prompts = setup
    whole = policy.sample(model, prompts, jax.random.key(1), sampling, parts=3)
    first = dataclasses.replace(prompts, inputs={k: v[:1] for k, v in prompts.inputs.items()})
    one = policy.sample(model, first, jax.random.fold_in(jax.random.key(1), 0), sampling)
    np.testing.assert_array_equal(whole.sample.text[:2], one.sample.text)
    np.testing.assert_array_equal(whole.sample.codes[:2], one.sample.codes)


@nnx.jit
def _thinker(model, ids, mel):
    return model.thinker_forward(ids, jnp.ones(ids.shape, bool), mel,
                                 jnp.ones((1, mel.shape[2]), jnp.int32))


@nnx.jit
def _talker_step(model, x, cache):
    return model.talker(x, attention_mask=jnp.ones(x.shape[:2], bool), cache=cache,
                        last_only=True)


def _hand_ce(model: QwenOmni, policy: QwenOmniPolicy, rec: dict) -> tuple[float, float]:
    """Text and codec CE sums of one record, unpadded: a full thinker forward, then the
    talker fed one code at a time through its cache."""
    cfg = model.config
    mel = render_codes_to_mel(rec["prompt_audio"], 128)[None]
    ids = [cfg.thinker.bos_token_id, 1, 3, cfg.thinker.audio_start_token_id] + \
        [cfg.thinker.audio_token_index] * len(rec["prompt_audio"]) + \
        [cfg.thinker.audio_end_token_id] + rec.get("prompt_text", []) + \
        [cfg.thinker.eos_token_id, 3, cfg.thinker.bos_token_id, 2, 3]
    text = rec["reply_text"] + [cfg.thinker.eos_token_id]
    codes = rec["reply_audio"] + [cfg.talker.codec_end_token_id]
    p = len(ids)
    full = jnp.asarray([ids + text])
    out = _thinker(model, full, jnp.asarray(mel))
    logp = jax.nn.log_softmax(out.logits[0, p - 1:-1])
    text_ce = -float(sum(logp[t, tok] for t, tok in enumerate(text)))
    reply = reply_rows(out.hidden, out.embeds)[:, p:]
    x, mask = talker_prompt(model, full[:, :p], jnp.ones((1, p), bool), out.hidden[:, :p],
                            out.embeds[:, :p], reply[:, 0], policy.speaker_bos)
    assert bool(mask.all())
    step = _talker_step(model, model.talker.prompt_embeds(x),
                        OmniCache.init(cfg.talker, 1, p + 2 + len(codes)))
    codec_ce = 0.0
    for t, code in enumerate(codes):
        codec_ce -= float(jax.nn.log_softmax(step.logits[0, -1])[code])
        part = reply_part(model, reply, jnp.asarray([len(text)]), jnp.asarray(t))
        step = _talker_step(model, model.talker.step_embeds(jnp.asarray([[code]]),
                                                            part[:, None]), step.cache)
    return text_ce, codec_ce


@pytest.fixture(scope="module")
def demo(setup, tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS))
    records = setup[2].read_records([str(path)])
    (batch,) = setup[2].eval_batches(records, 3, [8, 16, 32])
    return batch


def test_sft_loss_is_the_hand_computed_ce(setup, demo):
    cfg, model, policy, _, _ = setup
    batch = demo
    assert not batch["text_mask"][2].any() and batch["reply_text_attention"][2].any()
    terms = nnx.jit(policy.sft_loss)(model, batch)
    counts = policy.sft_counts(batch)
    hands = [_hand_ce(model, policy, r) for r in RECORDS]
    for i, s in enumerate(policy.streams):
        want_count = sum(len(r["reply_" + s]) + 1 for r in RECORDS)
        assert float(terms[s][1]) == want_count == float(counts[s])
        np.testing.assert_allclose(float(terms[s][0]), sum(h[i] for h in hands), rtol=1e-5)


@pytest.mark.slow
def test_sft_step_lowers_the_loss_and_codes_train_the_thinker(setup, demo):
    cfg, model, policy, _, _ = setup
    batch = demo

    @nnx.jit
    def total(m):
        t = policy.sft_loss(m, batch)
        return sum(t[s][0] / t[s][1] for s in policy.streams)

    trained = nnx.clone(model)
    grads = nnx.jit(nnx.grad(total))(trained)
    params = nnx.state(trained, nnx.Param)
    nnx.update(trained, jax.tree.map(lambda p, g: p - 0.05 * g, params,
                                     nnx.state(grads, nnx.Param)))
    assert float(total(trained)) < float(total(model)) - 1e-3
    # the codec stream's gradient reaches the thinker through the hidden states it reads
    codec_grads = nnx.jit(nnx.grad(lambda m: policy.sft_loss(m, batch)["audio"][0]))(model)
    layers = nnx.state(codec_grads, nnx.Param)["thinker"]["model"]
    assert jax.tree.reduce(lambda a, x: a + float(jnp.abs(x).sum()), layers, 0.0) > 0


def test_read_records_names_file_record_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt_audio": [1], "reply_text": [999],
                                "reply_audio": [1]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl, record 0: field 'reply_text'"):
        read_records([str(path)], tiny())


def test_reward_inputs_scores_and_digit_logits(setup, sampled):
    cfg, model, policy, sampling, prompts = setup
    scored = [{**RECORDS[1], "score": 4}, {**RECORDS[0], "score": 2}]
    t = cfg.thinker
    span = [t.audio_start_token_id, t.audio_token_index, t.audio_end_token_id]
    for view in ("text", "audio"):
        batch = policy.reward_inputs(scored, [40], view, [32, 64], rows=3)
        assert batch["input_ids"].shape == (3, 32)
        assert batch["mel"].shape[:2] == (3, 1 if view == "text" else 2)  # clips by row
        for row, rec in enumerate(scored + scored[:1]):
            codes = rec["reply_audio"]
            reply = (rec["reply_text"] if view == "text" else
                     span[:1] + span[1:2] * len(codes) + span[2:])
            want = policy.prompt_batch([rec], 1).layouts[0] + reply + [40]
            np.testing.assert_array_equal(batch["input_ids"][row, -len(want):], want)
            assert batch["attention_mask"][row].sum() == len(want)
            if view == "audio":
                frames = 4 * len(codes)
                np.testing.assert_array_equal(batch["mel"][row, 1, :, :frames],
                                              render_codes_to_mel(codes, 128))
                assert batch["mel_mask"][row, 1].sum() == frames
    batch = policy.reward_inputs(scored, [40], "audio", [32], rows=4)  # rows b, a, b, b
    digits = [50, 51, 52, 53, 54]
    reward_logits = nnx.jit(policy.reward_logits)
    logits = reward_logits(model, batch)
    two = policy.reward_digit_logits(model, batch, digits, micro=2)
    np.testing.assert_allclose(np.asarray(two), np.asarray(logits[:, -1, 50:55]), atol=1e-5)
    scores = policy.reward_scores(model, prompts, sampled, 2, [40], digits, "both")
    replies = policy.replies(sampled)
    recs = [{**(RECORDS + RECORDS[:1])[r // 2], "reply_text": a, "reply_audio": b}
            for r, (a, b) in enumerate(replies)]
    own = policy.reward_inputs(recs, [40], "both", [32, 64, 128], rows=6)
    np.testing.assert_allclose(scores, np.asarray(expected_score(
        reward_logits(model, own)[:, -1, 50:55])), atol=1e-5)


def test_text_tokenizer_encodes_without_special_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "[UNK]": 1, "score": 2, "is": 3, "4": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 0)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                            unk_token="[UNK]").save_pretrained(tmp_path)
    encoder = QwenOmniPolicy(tiny()).text_tokenizer(str(tmp_path))
    assert encoder.encode("score is 4") == [2, 3, 4]


def test_prompt_mel_files_are_read_relative_to_the_data_file(tmp_path):
    policy = QwenOmniPolicy(tiny())
    mel = np.random.default_rng(0).normal(size=(128, 11)).astype(np.float32)
    np.save(tmp_path / "clip.npy", mel)
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt_mel": "clip.npy", "reply_text": [1],
                                "reply_audio": [2]}) + "\n")
    (record,) = policy.read_records([str(path)])
    prompts = policy.prompt_batch([record], 16)
    np.testing.assert_array_equal(prompts.inputs["mel"][0, :, :11], mel)
    assert prompts.inputs["mel_mask"][0].sum() == 11
    count = int(audio_token_count(np.asarray([11]))[0])
    assert count == 3  # 11 frames: 6 after the stride-2 conv, 3 after pooling
    assert (prompts.inputs["input_ids"][0] == tiny().thinker.audio_token_index).sum() == count
    np.save(tmp_path / "clip.npy", mel[:80])
    with pytest.raises(DataError, match=r"clip.npy: prompt_mel has shape \(80, 11\)"):
        policy.prompt_length(record)
