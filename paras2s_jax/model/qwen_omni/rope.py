"""TMRoPE: Qwen2.5-Omni's multimodal rotary, and the position ids of text + audio prompts.

Positions come in three rows (time, height, width), int32[3, B, S]. The head's D/2
rotary frequencies are split into `mrope_section` = (s0, s1, s2) consecutive groups;
group i rotates by the positions of row i. Text advances all three rows together.

For prompts holding text and audio (no image or video), the reference gives every
token, audio included, the next position on all rows: the audio encoder emits 25
frames per second (40 ms each) and `position_id_per_seconds` is 25, so one position
per audio frame is the time alignment, and `seconds_per_chunk` only matters when audio
is interleaved with video frames (not supported here). Left padding takes no position:
real tokens count from 0 in each row; padding slots hold 1 (never attended to).
`rope_deltas` (next position minus the number of real tokens, int32[B, 1]) continue
the positions during decoding: a new token's position is its real-token index plus it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def mrope_tables(
    positions: jax.Array, head_dim: int, theta: float, sections: Sequence[int],
    dtype: jnp.dtype,
) -> tuple[jax.Array, jax.Array]:
    """cos, sin: [B, S, D] of the 3-row positions int[3, B, S], in float32 then cast.

    Frequency j < D/2 takes its angle from row r(j), the index of its section; the two
    halves of the head repeat the same angles (rotate-half layout).
    """
    if len(sections) != 3 or 2 * sum(sections) != head_dim:
        raise ValueError(f"mrope_section {tuple(sections)} must be 3 sections summing to "
                         f"head_dim / 2 = {head_dim // 2}")
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [3, B, S, D/2]
    row = np.repeat(np.arange(3), sections)  # section index of each frequency
    picked = jnp.take_along_axis(
        jnp.moveaxis(freqs, 0, -1), jnp.asarray(row)[None, None, :, None], axis=-1)[..., 0]
    angles = jnp.concatenate([picked, picked], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def rope_index(attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """3-row positions int32[3, B, S] and rope_deltas int32[B, 1] of a text + audio prompt.

    attention_mask: bool[B, S], False on (left or right) padding. Every real token,
    audio placeholders and their start/end markers included, advances all three rows
    by one (see the module docstring); padding slots get 1.
    """
    mask = attention_mask.astype(bool)
    counted = jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1
    positions = jnp.where(mask, counted, 1)
    real = mask.sum(axis=1, dtype=jnp.int32)
    last = jnp.max(jnp.where(mask, counted, -1), axis=1)
    deltas = (last + 1 - real)[:, None]
    return jnp.broadcast_to(positions, (3, *mask.shape)), deltas


def audio_token_count(feature_lengths: np.ndarray) -> np.ndarray:
    """Audio placeholder tokens per clip from its mel-frame count (the encoder's stride-2
    convolution then its stride-2 pooling): int[N] -> int[N]."""
    lengths = np.asarray(feature_lengths)
    return ((lengths - 1) // 2 + 1 - 2) // 2 + 1


def check_audio_spans(input_ids: np.ndarray, attention_mask: np.ndarray,
                      audio_token_index: int, feature_lengths: np.ndarray) -> None:
    """Raise unless the runs of `audio_token_index` in the real tokens (rows in order)
    have the lengths the audio clips' features give (`audio_token_count`)."""
    runs: list[int] = []
    for ids, mask in zip(np.asarray(input_ids), np.asarray(attention_mask, bool), strict=True):
        is_audio = np.concatenate([[False], ids[mask] == audio_token_index, [False]])
        edges = np.flatnonzero(np.diff(is_audio.astype(np.int8)))
        runs.extend((edges[1::2] - edges[::2]).tolist())
    lengths = np.asarray(feature_lengths).tolist()
    expected = audio_token_count(feature_lengths).tolist()
    if runs != expected:
        raise ValueError(f"audio placeholder runs {runs} do not match the clips' token counts "
                         f"{expected} (from feature lengths {lengths})")
