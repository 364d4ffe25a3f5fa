"""Output heads applied in sequence chunks: token log-probabilities and entropies.

A full-vocabulary head over every position would materialise float32[B, L, V] logits
(168,448 ids: 2.7 GB per 1,000 positions of 4 rows) and its log-softmax, and keep them
for the backward pass. Here the sequence is cut into chunks; each chunk's logits are
computed, reduced to log p(token) = logit[token] / T - logsumexp(logits / T) (and the
entropy) and dropped, and the chunk is rematerialised in the backward pass, so at most
one chunk's [B, C, V] logits are alive at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.model.layers import LOGIT_AXES, Dense
from paras2s_jax.sharding import constrain


def token_logprobs(
    head: Dense,
    hidden: jax.Array,
    tokens: jax.Array,
    temperature: float = 1.0,
    chunk: int = 512,
    with_entropy: bool = False,
) -> tuple[jax.Array, jax.Array | None]:
    """(log p(tokens) float32[B, L], entropy float32[B, L] or None) of softmax(logits / T).

    head: the output projection (`model.head(stream)`); hidden: its normalised input
    [B, L, E]; tokens: int[B, L]. T = 0 (greedy) counts as 1, as the sampler defines
    its log-probabilities. `chunk` positions are processed at a time.
    """
    scale = float(temperature) if temperature > 0 else 1.0
    batch, length, _ = hidden.shape
    chunk = max(1, min(chunk, length))
    n = -(-length // chunk)
    pad = n * chunk - length
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        tokens = jnp.pad(tokens, ((0, 0), (0, pad)))
    # [n, B, C, ...]: scan over chunks, each a slice of every row.
    hs = jnp.swapaxes(hidden.reshape(batch, n, chunk, -1), 0, 1)
    ts = jnp.swapaxes(tokens.reshape(batch, n, chunk).astype(jnp.int32), 0, 1)
    graphdef, state = nnx.split(head)

    @jax.checkpoint
    def one(state, h, t):
        logits = nnx.merge(graphdef, state)(h, out_dtype=jnp.float32)
        scaled = constrain(logits, LOGIT_AXES) / scale
        lse = jax.nn.logsumexp(scaled, axis=-1)
        picked = jnp.take_along_axis(scaled, t[..., None], axis=-1)[..., 0]
        ent = None
        if with_entropy:
            ent = lse - jnp.sum(jax.nn.softmax(scaled, axis=-1) * scaled, axis=-1)
        return picked - lse, ent

    def body(carry, xs):
        return carry, one(state, *xs)

    _, (logp, ent) = jax.lax.scan(body, None, (hs, ts))
    unchunk = lambda x: jnp.swapaxes(x, 0, 1).reshape(batch, n * chunk)[:, :length]  # noqa: E731
    return unchunk(logp), (unchunk(ent) if with_entropy else None)
