"""The jitted dual-stream sampler against the full-sequence forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from paras2s_jax import sampling
from paras2s_jax.layout import Message, build_prompt, left_pad, parse_reply
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.sampling import SamplingConfig, generate, token_logprobs
from paras2s_jax.sharding import MeshConfig, create_sharded, make_mesh


@pytest.fixture(scope="module")
def model():
    return KimiAudio(tiny(), rngs=nnx.Rngs(11))


def _prompts(cfg, lengths, seed=0):
    rng = np.random.default_rng(seed)
    streams = [
        build_prompt([Message("user", audio=tuple(rng.integers(0, 256, n).tolist()))], cfg)
        for n in lengths
    ]
    return left_pad(streams, max(len(s) for s in streams), cfg.special.pad)


@nnx.jit
def _full_forward(model, text, audio, mask):
    return model(text, audio, attention_mask=mask)


def _teacher_forced_logits(model, prompts, out, g):
    """Logits of a full forward over prompt + sampled reply, at the predicting positions."""
    text = np.concatenate([np.repeat(prompts["text"], g, 0), np.asarray(out.text)], 1)
    audio = np.concatenate([np.repeat(prompts["audio"], g, 0), np.asarray(out.audio)], 1)
    mask = np.concatenate(
        [np.repeat(prompts["attention_mask"], g, 0), np.asarray(out.reply_mask())], 1
    )
    full = _full_forward(model, text, audio, mask)
    p, t = prompts["text"].shape[1], out.text.shape[1]
    # Column p-1+i predicts reply step i.
    return full.text_logits[:, p - 1 : p - 1 + t], full.audio_logits[:, p - 1 : p - 1 + t]


def test_greedy_equals_argmax_of_full_forward(model):
    cfg = model.config
    prompts = _prompts(cfg, [5, 9, 3])
    sc = SamplingConfig(max_new_tokens=14, text_temperature=0.0, audio_temperature=0.0)
    out = generate(model, prompts, jax.random.key(0), sc)
    t_logits, a_logits = _teacher_forced_logits(model, prompts, out, 1)
    tm, am = np.asarray(out.text_mask), np.asarray(out.audio_mask)
    assert tm.any() and am.any()
    np.testing.assert_array_equal(np.asarray(out.text)[tm], np.argmax(t_logits, -1)[tm])
    np.testing.assert_array_equal(np.asarray(out.audio)[am], np.argmax(a_logits, -1)[am])
    # The audio delay: nothing chosen on the audio stream in the first steps.
    assert not am[:, : cfg.audio_delay].any()
    assert (np.asarray(out.audio)[:, : cfg.audio_delay] == cfg.special.text_blank).all()


def test_logprobs_equal_full_forward_recomputation(model):
    cfg = model.config
    prompts = _prompts(cfg, [6, 4], seed=1)
    sc = SamplingConfig(max_new_tokens=16, text_temperature=1.3, text_top_k=0,
                        audio_temperature=0.8, audio_top_k=10, num_samples=4)
    out = generate(model, prompts, jax.random.key(1), sc)
    assert out.text.shape == (8, 16)
    t_logits, a_logits = _teacher_forced_logits(model, prompts, out, 4)
    t_lp = token_logprobs(t_logits, jnp.asarray(out.text), sc.text_temperature)
    a_lp = token_logprobs(a_logits, jnp.asarray(out.audio), sc.audio_temperature)
    tm, am = np.asarray(out.text_mask), np.asarray(out.audio_mask)
    np.testing.assert_allclose(np.asarray(out.text_logprobs)[tm], np.asarray(t_lp)[tm], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.audio_logprobs)[am], np.asarray(a_lp)[am], atol=1e-5)
    assert np.all(np.asarray(out.text_logprobs)[~tm] == 0.0)
    # G samples of one prompt differ (the sampler really samples).
    assert len({tuple(r) for r in np.asarray(out.audio)[:4].tolist()}) > 1


def _forced_model(text_id: int, audio_id: int, seed: int = 2) -> KimiAudio:
    """A tiny model whose text head always says `text_id` and audio head `audio_id`.

    With the layers' output projections zeroed and an all-ones embedding, every hidden
    state is all ones, so a head's logits are its kernel's column sums.
    """
    model = KimiAudio(tiny(), rngs=nnx.Rngs(seed))
    for layer in [*model.layers, *model.mimo_layers]:
        layer.self_attn.o_proj.kernel[...] = jnp.zeros_like(layer.self_attn.o_proj.kernel[...])
        layer.mlp.down_proj.kernel[...] = jnp.zeros_like(layer.mlp.down_proj.kernel[...])
    model.embed_tokens.embedding[...] = jnp.ones_like(model.embed_tokens.embedding[...])
    model.lm_head.kernel[...] = jnp.zeros_like(model.lm_head.kernel[...])
    model.lm_head.kernel[..., text_id] = 1.0
    model.mimo_output.kernel[...] = jnp.zeros_like(model.mimo_output.kernel[...])
    model.mimo_output.kernel[..., audio_id] = 1.0
    return model


def test_stop_rules_and_forced_tokens():
    cfg = tiny()
    sp = cfg.special
    model = _forced_model(sp.text_eos, sp.msg_end)
    prompts = _prompts(cfg, [4])
    out = generate(model, prompts, jax.random.key(0), SamplingConfig(max_new_tokens=20))
    d = cfg.audio_delay
    text, audio = np.asarray(out.text)[0], np.asarray(out.audio)[0]
    assert text[0] == sp.text_eos and (text[1 : d + 1] == sp.text_blank).all()
    assert np.asarray(out.text_mask)[0].tolist()[: d + 1] == [True] + [False] * d
    assert audio[d] == sp.msg_end and int(out.lengths[0]) == d + 1 and bool(out.finished[0])
    assert not np.asarray(out.audio_mask)[0, d + 1 :].any()

    text_only = generate(model, prompts, jax.random.key(0),
                         SamplingConfig(max_new_tokens=20, output_type="text"))
    assert int(text_only.lengths[0]) == 1 and not np.asarray(text_only.audio_mask).any()


def test_columns_after_the_stop_are_blank_not_token_zero():
    """Audio stops before the text says EOS: the unused columns must not parse as text."""
    cfg = tiny()
    sp = cfg.special
    model = _forced_model(7, sp.msg_end)  # text never ends; audio ends at the first chance
    out = generate(model, _prompts(cfg, [4, 6]), jax.random.key(0),
                   SamplingConfig(max_new_tokens=20, text_temperature=0.0))
    d = cfg.audio_delay
    assert np.asarray(out.lengths).tolist() == [d + 1, d + 1]
    text, audio = np.asarray(out.text), np.asarray(out.audio)
    assert (text[:, d + 1:] == sp.text_blank).all() and (audio[:, d + 1:] == sp.text_blank).all()
    for row in range(2):
        words, codes = parse_reply(text[row], audio[row], cfg)
        assert words == [7] * (d + 1) and codes == []


def test_decode_loop_compiles_once_per_bucket(model):
    cfg = model.config
    sc = SamplingConfig(max_new_tokens=8, audio_temperature=1.0)
    before = sampling.decode_program._cache_size()
    for seed, lengths in enumerate([[3, 5], [4, 4], [2, 6], [5, 1]]):
        # Prompt lengths 7..11 all fall in the 16-token bucket.
        generate(model, _prompts(cfg, lengths, seed), jax.random.key(seed), sc)
    assert sampling.decode_program._cache_size() - before == 1
    generate(model, _prompts(cfg, [20, 3]), jax.random.key(9), sc)  # the 32 bucket
    assert sampling.decode_program._cache_size() - before == 2


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_sharded_sampling_equals_unsharded():
    cfg = tiny()
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = create_sharded(lambda: KimiAudio(cfg, rngs=nnx.Rngs(4)), mesh)
    plain = KimiAudio(cfg, rngs=nnx.Rngs(4))
    prompts = _prompts(cfg, [3, 6, 2, 5], seed=3)
    sc = SamplingConfig(max_new_tokens=10, audio_temperature=0.0)
    a = generate(sharded, prompts, jax.random.key(0), sc)
    b = generate(plain, prompts, jax.random.key(0), sc)
    np.testing.assert_array_equal(np.asarray(a.text), np.asarray(b.text))
    np.testing.assert_array_equal(np.asarray(a.audio), np.asarray(b.audio))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="output_type"):
        SamplingConfig(output_type="speech")
    cfg = tiny()
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    prompts = _prompts(cfg, [2, 4])
    prompts["attention_mask"] = prompts["attention_mask"][:, ::-1]
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, prompts, jax.random.key(0), SamplingConfig())
    with pytest.raises(KeyError, match="audio"):
        generate(model, {"text": prompts["text"], "attention_mask": prompts["attention_mask"]},
                 jax.random.key(0), SamplingConfig())


def test_text_only_model_samples_text():
    """A model without the audio branch (a plain Qwen2 trunk) samples its text stream."""
    cfg = tiny(mimo_layers=0, use_whisper_feature=False)
    model = KimiAudio(cfg, rngs=nnx.Rngs(5))
    prompts = _prompts(cfg, [5, 8], seed=4)
    with pytest.raises(ValueError, match="mimo_layers=0"):
        generate(model, prompts, jax.random.key(0), SamplingConfig(max_new_tokens=4))
    sc = SamplingConfig(max_new_tokens=12, text_temperature=0.0, output_type="text")
    out = generate(model, prompts, jax.random.key(0), sc)
    text = np.concatenate([prompts["text"], np.asarray(out.text)], 1)
    mask = np.concatenate([prompts["attention_mask"], np.asarray(out.reply_mask())], 1)
    full = _full_forward(model, text, None, mask)  # the text stream alone, as Qwen2
    assert full.audio_logits is None
    p = prompts["text"].shape[1]
    t_logits = full.text_logits[:, p - 1 : p - 1 + 12]
    tm = np.asarray(out.text_mask)
    assert tm[:, 0].all() and not np.asarray(out.audio_mask).any()
    np.testing.assert_array_equal(np.asarray(out.text)[tm], np.argmax(t_logits, -1)[tm])
    lp = token_logprobs(t_logits, jnp.asarray(out.text), 0.0)
    np.testing.assert_allclose(np.asarray(out.text_logprobs)[tm], np.asarray(lp)[tm], atol=1e-5)


def test_a_remat_model_samples_like_a_plain_one(model):
    # Remat is a training setting (the 7B presets set it); the sampler must trace with it.
    cfg = model.config
    remat = nnx.merge(nnx.graphdef(KimiAudio(cfg.replace(remat=True), rngs=nnx.Rngs(0))),
                      nnx.state(model))
    prompts = _prompts(cfg, [4, 6])
    sc = SamplingConfig(max_new_tokens=6, audio_temperature=0.9, num_samples=2)
    plain = generate(model, prompts, jax.random.key(3), sc)
    out = generate(remat, prompts, jax.random.key(3), sc)
    np.testing.assert_array_equal(np.asarray(out.audio), np.asarray(plain.audio))
    np.testing.assert_allclose(out.text_logprobs, plain.text_logprobs, atol=1e-6)
