"""Whisper features reach the sampler, the log-probabilities and the reward model of
distillation, RM training and GRPO, as they reached the SFT model: each output equals
an SFT-style forward built here by hand (features at the user-audio positions of the
row's own prompt) and changes when the features change."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import grpo as grpo_configs
from configs import reward as reward_configs
from paras2s_jax import layout
from paras2s_jax.audio.features import place_features
from paras2s_jax.checkpoint.orbax_io import read_meta, save_model
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.policy import policy_for
from paras2s_jax.sampling import SamplingConfig, generate
from paras2s_jax.train import grpo_models, trainer
from paras2s_jax.train.distill import distill, read_scored, toy_judge
from paras2s_jax.train.grpo_stage import rollout_step, run_grpo, update_step
from paras2s_jax.train.grpo_update import build_step, prompt_rows, sampling_config
from paras2s_jax.train.hosts import process_rows
from paras2s_jax.train.inputs import InputMismatch
from paras2s_jax.train.reward import reward_input
from paras2s_jax.train.reward_stage import _loss_fns, collate_left, run_reward
from paras2s_jax.train.rollout import score_replies

G, STEPS, SUFFIX, DIGITS = 2, 8, [600], [595, 596, 597, 598, 599]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Three prompts of different lengths with feature files, as SFT records name them."""
    out = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    dim = tiny().adaptor_input_dim
    recs = []
    for i, n in enumerate((4, 6, 5)):
        path = out / f"clip{i}.npy"
        np.save(path, rng.normal(0, 3, (n, dim)).astype(np.float32))
        recs.append({"id": f"q{i}", "prompt_audio": rng.integers(0, 256, n).tolist(),
                     "prompt_features": str(path), "scenario": {
                         "dimension": "emotion", "template": 0, "topic": "dog", "style": "sad"}})
    return recs


def _feats(record):
    return np.load(record["prompt_features"])


@nnx.jit
def _sft_forward(model, text, audio, features, continuous):
    """The SFT forward: features added at the user-audio (continuous) positions (none:
    the codes alone)."""
    if features is None:
        return model(text, audio)
    return model(text, audio, whisper_features=features, continuous_mask=continuous)


def _by_hand(model, record, text, audio, heard=True):
    """Per-step log-probs (T = 1) of reply columns (text, audio) after the record's prompt,
    from one unpadded SFT-style forward built here."""
    prompt = layout.record_prompt(record, model.config)
    n, p = len(text), len(prompt)
    cont = np.concatenate([prompt.continuous, np.zeros(n, bool)])
    feats = jnp.asarray(place_features(_feats(record), cont))[None] if heard else None
    res = _sft_forward(model, jnp.asarray(np.concatenate([prompt.text, text]))[None],
                       jnp.asarray(np.concatenate([prompt.audio, audio]))[None],
                       feats, jnp.asarray(cont)[None])
    out = {}
    for s, logits, tokens in (("text", res.text_logits, text), ("audio", res.audio_logits, audio)):
        lp = jax.nn.log_softmax(logits[0, p - 1:p - 1 + n].astype(jnp.float32), -1)
        out[s] = np.asarray(jnp.take_along_axis(lp, jnp.asarray(tokens)[:, None], -1)[:, 0])
    return out


def _rm_by_hand(model, record, text, audio, heard=True):
    """Expected score of one reply: prompt + parsed reply + suffix, alone, SFT-style."""
    mc = model.config
    reply = layout.build_reply(*layout.parse_reply(text, audio, mc), mc)
    seq = reward_input(layout.record_prompt(record, mc), reply, SUFFIX, mc)
    feats = place_features(_feats(record), seq.continuous)[None] if heard else None
    z = np.asarray(_sft_forward(model, seq.text[None], seq.audio[None], feats,
                                seq.continuous[None]).text_logits[0, -1, DIGITS], np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return float(p @ np.arange(1, 6))


@pytest.fixture(scope="module")
def rollout(records, tmp_path_factory):
    """One GRPO rollout with features on, sampled in two parts, scored by the RM path."""
    cfg = grpo_configs.get_config("toy")
    cfg.workdir = str(tmp_path_factory.mktemp("grpo"))
    cfg.init.source = "fresh"
    cfg.data.whisper_features = True
    cfg.grpo.group_size, cfg.grpo.query_batch = G, 2
    cfg.grpo.rollout_micro_batches = cfg.grpo.forward_micro_batches = 2
    cfg.grpo.sampling.max_new_tokens = STEPS
    cfg.grpo.truncated = "keep"
    run = trainer.setup(cfg, jax.devices()[:2])  # rows split over a 2-device mesh
    sampling = sampling_config(cfg)
    seen = {}

    def score(prompts, out, group):
        seen.update(streams=prompts.layouts, out=out, feats=prompts.features)
        return score_replies(run.model(), prompts.layouts, out, group, SUFFIX, DIGITS, "both",
                             micro=2, features=prompts.features)

    picks = records[1:]  # prompts of lengths 6 and 5: left padding differs per row
    batch, _ = rollout_step(cfg, run, picks, jax.random.key(0), sampling, score)
    batch["rewards"] = np.asarray(score_replies(run.model(), seen["streams"], seen["out"], G,
                                                SUFFIX, DIGITS, "both", micro=2,
                                                features=seen["feats"]))
    return cfg, run, sampling, picks, batch, seen


def test_sampler_and_logprob_forwards_hear_the_features_as_sft(rollout):
    cfg, run, sampling, picks, batch, _ = rollout
    model = run.model()
    micro = cfg.grpo.forward_micro_batches
    # Each micro-batch holds whole groups: each prompt's columns run once for its G rows.
    assert prompt_rows(cfg, micro) == G
    log_probs = grpo_models.build_log_probs(run, sampling, micro, G)
    heard = log_probs(run.state["params"], run.rest, batch)
    for row in range(2 * G):
        text, audio = batch["text"][row, -STEPS:], batch["audio"][row, -STEPS:]
        hand = _by_hand(model, picks[row // G], text, audio)
        for s in ("text", "audio"):
            m = batch[f"{s}_mask"][row]
            assert m.any()
            # The sampler drew these tokens hearing the row's own prompt features ...
            np.testing.assert_allclose(batch[f"sampler_{s}_logprobs"][row][m], hand[s][m],
                                       atol=2e-4)
            # ... and so does the (micro-batched, sharded) log-prob forward.
            np.testing.assert_allclose(np.asarray(heard[s])[row][m], hand[s][m], atol=2e-4)
    # Features matter: the codes alone give other log-probabilities.
    deaf = _by_hand(model, picks[0], text := batch["text"][0, -STEPS:],
                    batch["audio"][0, -STEPS:], heard=False)
    hand = _by_hand(model, picks[0], text, batch["audio"][0, -STEPS:])
    for s in ("text", "audio"):
        m = batch[f"{s}_mask"][0]
        assert np.abs(hand[s][m] - deaf[s][m]).max() > 1e-2


def test_first_update_reference_is_the_sampling_policy_hearing_the_features(rollout):
    """At a run's first update the policy is the reference: the reference forward (micro-
    batched, shared prompts, features) gives the sampler's log-probs and the KL is 0."""
    cfg, run, sampling, _, batch, _ = rollout
    run = dataclasses.replace(run, state=jax.tree.map(jnp.copy, run.state))  # donated
    batch = {k: v for k, v in batch.items() if k != "rewards"}
    micro = cfg.grpo.forward_micro_batches
    metrics = update_step(cfg, run, batch, build_step(cfg, run, sampling),
                          grpo_models.build_log_probs(run, sampling, micro,
                                                      prompt_rows(cfg, micro)),
                          grpo_models.reference_params(run, False))
    for s in ("text", "audio"):
        m = batch[f"{s}_mask"]
        np.testing.assert_allclose(batch[f"ref_{s}_logprobs"][m],
                                   batch[f"sampler_{s}_logprobs"][m], atol=2e-4)
        assert metrics[f"sampler_gap_{s}"] < 2e-5
        assert abs(metrics[f"kl_{s}"]) < 1e-7
    print({k: v for k, v in metrics.items() if "gap" in k or k.startswith("kl_")})


def test_reward_model_scores_with_each_rows_prompt_features(rollout):
    _, run, _, picks, batch, seen = rollout
    model, out = run.model(), seen["out"]
    deaf = score_replies(model, seen["streams"], out, G, SUFFIX, DIGITS, "both")
    for row in range(2 * G):
        text, audio = np.asarray(out.text[row]), np.asarray(out.audio[row])
        assert batch["rewards"][row] == pytest.approx(
            _rm_by_hand(model, picks[row // G], text, audio), abs=1e-4)
    assert np.abs(batch["rewards"] - deaf).max() > 1e-3  # the codes alone score otherwise


def test_distillation_samples_hearing_the_features_and_records_them(records, tmp_path):
    model = KimiAudio(tiny(), rngs=nnx.Rngs(0))
    mc = model.config
    sampling = SamplingConfig(max_new_tokens=STEPS, audio_temperature=1.0, num_samples=2)
    # A query may carry its features in memory (the benchmark path): they are written out.
    queries = [records[0], {k: v for k, v in records[1].items() if k != "prompt_features"}
               | {"whisper_features": _feats(records[1])}]
    distill(model, queries, toy_judge, tmp_path / "a", sampling, "toy", chunk_queries=3,
            whisper_features=True)
    heard = read_scored(sorted((tmp_path / "a").glob("*.jsonl")))
    # The sampler's replies, by hand: the chunk padded to 3 prompts with the first,
    # each prompt's own features at its audio codes.
    streams = [layout.record_prompt(q, mc) for q in queries] * 2
    streams = streams[:3]
    length = max(len(s) for s in streams)
    prompts = layout.left_pad(streams, length, mc.special.pad)
    feats = np.zeros((3, length, mc.adaptor_input_dim), np.float32)
    for i, rec in enumerate((records[0], records[1], records[0])):
        feats[i][prompts["continuous"][i]] = _feats(rec)
    out = generate(model, prompts | {"whisper_features": feats},
                   jax.random.fold_in(jax.random.key(0), 0), sampling)
    for i, rec in enumerate(heard):
        q = i // 2
        text, audio = layout.parse_reply(np.asarray(out.text[i]), np.asarray(out.audio[i]), mc)
        assert (rec["query_id"], rec["reply_text"], rec["reply_audio"]) == (
            records[q]["id"], text, audio)
        np.testing.assert_array_equal(np.load(rec["prompt_features"]), _feats(records[q]))


def test_rm_training_batches_carry_the_features_of_their_rows(tmp_path):
    model = KimiAudio(tiny(), rngs=nnx.Rngs(1))
    mc = model.config
    rng = np.random.default_rng(1)
    scored = []
    for i, s in enumerate((2, 5, 3)):  # one prompt length: one compilation by hand
        feats = rng.normal(0, 3, (5, mc.adaptor_input_dim)).astype(np.float32)
        np.save(tmp_path / f"{i}.npy", feats)
        scored.append({"prompt_audio": rng.integers(0, 256, 5).tolist(), "score": s,
                       "prompt_features": str(tmp_path / f"{i}.npy"),
                       "reply_text": [5, 6], "reply_audio": [7, 8, 9]})
    batch = collate_left(scored, mc, SUFFIX, [64], 4, "both", whisper_features=True)
    for i, rec in enumerate(scored + [scored[0]]):  # the padding row repeats the first
        cont = batch["continuous"][i]
        assert cont.sum() == len(rec["prompt_audio"])
        np.testing.assert_array_equal(batch["whisper_features"][i][cont], _feats(rec))
        assert not batch["whisper_features"][i][~cont].any()
    # Each process keeps its rows of every field, features included.
    share = process_rows(batch, 1, 2)
    np.testing.assert_array_equal(share["whisper_features"], batch["whisper_features"][2:])
    np.testing.assert_array_equal(share["score"], batch["score"][2:])
    # The RM loss reads them: the per-row digit cross-entropy is the SFT-style forward's.
    loss_fn = nnx.jit(lambda m, b: _loss_fns(policy_for(mc), tuple(DIGITS))[0](m, b, None))
    total, count = loss_fn(model, batch)["score"]
    deaf = {k: v for k, v in batch.items() if k != "whisper_features"}
    assert abs(float(loss_fn(model, deaf)["score"][0]) - float(total)) > 1e-3
    nll = 0.0
    for rec in scored:
        seq = reward_input(layout.record_prompt(rec, mc), layout.build_reply(
            rec["reply_text"], rec["reply_audio"], mc), SUFFIX, mc)
        z = _sft_forward(model, seq.text[None], seq.audio[None], place_features(
            _feats(rec), seq.continuous)[None], seq.continuous[None]).text_logits[0, -1]
        nll -= float(jax.nn.log_softmax(z)[DIGITS[rec["score"] - 1]])
    assert float(count) == 3
    assert float(total) == pytest.approx(nll, rel=1e-4)


@pytest.mark.parametrize("stage", ["reward", "grpo"])
def test_stages_refuse_a_checkpoint_trained_with_the_other_setting(stage, records, tmp_path):
    ckpt = tmp_path / "sft"
    save_model(ckpt, KimiAudio(tiny(), rngs=nnx.Rngs(0)),
               meta={"stage": "sft", "whisper_features": True})
    assert read_meta(ckpt) == {"stage": "sft", "whisper_features": True}
    cfg = (reward_configs if stage == "reward" else grpo_configs).get_config("toy")
    cfg.workdir, cfg.init.path, cfg.toy.enabled = str(tmp_path / "run"), str(ckpt), False
    cfg.reward.path = str(tmp_path / "no_reward_model")  # the init checkpoint is checked first
    shard = tmp_path / "prompts.jsonl"
    shard.write_text("".join(f'{{"id": "{r["id"]}", "prompt_audio": {r["prompt_audio"]}}}\n'
                             for r in records))
    cfg.data.train_files = [str(shard)]
    if stage == "grpo":
        cfg.grpo.query_batch = 2
    cfg.data.whisper_features = False
    with pytest.raises(InputMismatch, match=r"config\.data\.whisper_features=False .* "
                                              r"--data\.whisper_features=True"):
        (run_reward if stage == "reward" else run_grpo)(cfg)
