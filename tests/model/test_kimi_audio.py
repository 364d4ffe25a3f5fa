"""Invariances of the Flax model: KV-cache decoding, padding, causality, remat, dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from paras2s_jax.model import ConfigError, KimiAudio, KVCache, count_params, kimi_audio_7b, tiny

PUBLISHED_PARAMS = 9_766_334_464  # sum of the 419 weight tensors of Kimi-Audio-7B


@pytest.fixture(scope="module")
def model():
    return KimiAudio(tiny(), rngs=nnx.Rngs(3))


def _streams(cfg, batch, length, seed):
    rng = np.random.default_rng(seed)
    text = rng.integers(0, cfg.text_vocab_size, size=(batch, length))
    audio = rng.integers(cfg.audio_token_offset, cfg.vocab_size, size=(batch, length))
    return jnp.asarray(text, jnp.int32), jnp.asarray(audio, jnp.int32)


@nnx.jit
def _full(model, text, audio, mask):
    return model(text, audio, attention_mask=mask)


@nnx.jit
def _cached(model, text, audio, mask, cache):
    out = model(text, audio, attention_mask=mask, cache=cache)
    return out.text_logits, out.audio_logits, out.cache


def test_published_parameter_count():
    abstract = nnx.eval_shape(lambda: KimiAudio(kimi_audio_7b(), rngs=nnx.Rngs(0)))
    n = count_params(abstract)
    print(f"Kimi-Audio-7B parameters (jax.eval_shape): {n:,}")
    assert n == PUBLISHED_PARAMS


def test_prefill_then_decode_equals_full_forward(model):
    cfg = model.config
    text, audio = _streams(cfg, batch=3, length=11, seed=0)
    mask = np.ones((3, 11), bool)
    mask[0, :3] = False  # left padding on row 0
    mask[2, :1] = False
    mask = jnp.asarray(mask)
    full = _full(model, text, audio, mask)

    prompt = 6
    cache = KVCache.init(cfg, batch=3, max_length=16)
    t_logits, a_logits, cache = _cached(
        model, text[:, :prompt], audio[:, :prompt], mask[:, :prompt], cache
    )
    steps_t, steps_a = [t_logits], [a_logits]
    for i in range(prompt, 11):
        t_logits, a_logits, cache = _cached(
            model, text[:, i : i + 1], audio[:, i : i + 1], mask[:, i : i + 1], cache
        )
        steps_t.append(t_logits)
        steps_a.append(a_logits)
    dec_t = np.concatenate(steps_t, axis=1)
    dec_a = np.concatenate(steps_a, axis=1)
    m = np.asarray(mask)
    assert int(cache.index) == 11
    np.testing.assert_array_equal(np.asarray(cache.next_position), m.sum(axis=1))
    np.testing.assert_allclose(dec_t[m], np.asarray(full.text_logits)[m], atol=1e-5)
    np.testing.assert_allclose(dec_a[m], np.asarray(full.audio_logits)[m], atol=1e-5)


def test_left_padding_does_not_change_real_tokens(model):
    cfg = model.config
    text, audio = _streams(cfg, batch=1, length=7, seed=1)
    alone = _full(model, text, audio, jnp.ones((1, 7), bool))
    pad = jnp.full((1, 4), cfg.special.pad, jnp.int32)
    padded = _full(
        model,
        jnp.concatenate([pad, text], 1),
        jnp.concatenate([pad, audio], 1),
        jnp.concatenate([jnp.zeros((1, 4), bool), jnp.ones((1, 7), bool)], 1),
    )
    np.testing.assert_allclose(padded.text_logits[:, 4:], alone.text_logits, atol=1e-5)
    np.testing.assert_allclose(padded.audio_logits[:, 4:], alone.audio_logits, atol=1e-5)


def test_causality_gradient_from_future_is_zero(model):
    cfg = model.config
    text, audio = _streams(cfg, batch=1, length=8, seed=2)
    cont = jnp.ones((1, 8), bool)
    features = jax.random.normal(jax.random.key(0), (1, 8, cfg.adaptor_input_dim))

    @nnx.jit
    def grad_of_position_3(model, features):
        def logits_at_3(f):
            out = model(text, audio, whisper_features=f, continuous_mask=cont)
            return out.text_logits[0, 3].sum() + out.audio_logits[0, 3].sum()

        return jax.grad(logits_at_3)(features)

    g = np.abs(np.asarray(grad_of_position_3(model, features)))[0].max(axis=-1)
    assert np.all(g[:4] > 0), "position 3 must depend on itself and the past"
    assert np.all(g[4:] == 0.0), "position 3 must not see the future"


def test_remat_matches_plain_gradients():
    cfg = tiny()
    plain = KimiAudio(cfg, rngs=nnx.Rngs(5))
    remat = KimiAudio(cfg.replace(remat=True), rngs=nnx.Rngs(5))
    text, audio = _streams(cfg, batch=2, length=6, seed=3)

    @nnx.jit
    def grads(model):
        def loss(m):
            out = m(text, audio)
            return out.text_logits.mean() + out.audio_logits.mean()

        return nnx.grad(loss)(model)

    g_plain = jax.tree.leaves(nnx.to_pure_dict(grads(plain)))
    g_remat = jax.tree.leaves(nnx.to_pure_dict(grads(remat)))
    for a, b in zip(g_plain, g_remat, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bfloat16_compute_tracks_float32():
    cfg = tiny()
    f32 = KimiAudio(cfg, rngs=nnx.Rngs(6))
    bf16 = KimiAudio(cfg.replace(dtype="bfloat16", param_dtype="bfloat16"), rngs=nnx.Rngs(6))
    assert bf16.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    text, audio = _streams(cfg, batch=2, length=6, seed=4)
    mask = jnp.ones((2, 6), bool)
    ref, low = _full(f32, text, audio, mask), _full(bf16, text, audio, mask)
    assert low.text_logits.dtype == jnp.float32  # heads accumulate in float32
    scale = float(jnp.abs(ref.text_logits).max())
    assert float(jnp.abs(low.text_logits - ref.text_logits).max()) < 0.05 * scale
    assert float(jnp.abs(low.audio_logits - ref.audio_logits).max()) < 0.05 * scale


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_heads=5), "num_heads"),
        (dict(num_kv_heads=3), "num_kv_heads"),
        (dict(mimo_from_layer=9), "mimo_from_layer"),
        (dict(dtype="float16"), "dtype"),
        (dict(hidden_size=0), "hidden_size"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        tiny(**overrides)
