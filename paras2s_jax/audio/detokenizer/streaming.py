"""Semantic audio ids -> 24 kHz wav, streamed exactly as Kimi-Audio's `detokenize_audio`.

Schedule (`KimiAudio.detokenize_audio` + `PrefixStreamingFlowMatchingDetokenizer`):

* ids (12.5 Hz, 0..16383) are repeated 4x to 50 Hz mel frames and cut into chunks of 30
  ids (the first chunk too). A chunk is final when no ids follow it.
* Every non-final chunk generates 12 look-ahead ids (48 frames) more than it emits: the
  next chunk's input is [those 48 frames ; its own frames], from fresh noise, so the
  look-ahead frames are generated twice and only the second version is emitted.
* Positions continue across chunks and advance by emitted frames only.
* After a non-final chunk the clean emitted (normalised) mel is run once more through the
  DiT at t = 0.999; its post-RoPE keys/values are appended to the KV cache, which keeps the
  newest 900 frames. The ODE of later chunks attends to [cache ; chunk].
* When position + 2 x emitted frames > 4096 after a non-final chunk, the DiT state
  (positions, cache) is cleared; the pending look-ahead ids and the wav overlap are kept.
* The mel is de-normalised (x * std + mean) before the vocoder.

Wav overlap (quirks kept on purpose, they shape the output):

* First chunk: vocode it, emit the first half and keep the second half (wav and mel).
* Later chunks: vocode [kept mel ; new mel]. With G = 2 x len(kept wav) if the result is
  longer than that, else half its length, emit its first G samples after cross-fading the
  first G // 2 of them with the kept wav: kept * w[-G//2:] + new * w[:G//2], w the
  *periodic* Hamming window of length G. The two weights sum to 1.08 at every sample
  (0.54 − 0.46 cos θ + 0.54 + 0.46 cos θ), not 1, so the faded region is 8% louder than
  a true cross-fade (and may exceed ±1). Keep the remaining samples and the last
  (remaining // 480) mel frames of the new chunk; when G is not a multiple of 480 the kept
  wav and mel disagree by part of a frame, as in the original.
* Final chunk: emit the whole vocoded [kept mel ; new mel], no cross-fade.

In bfloat16 (the original's dtype) the vocoder output and the cross-fade arithmetic are
rounded to bfloat16 as well. Zero ids are rejected with `ValueError` (the original crashes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from paras2s_jax.audio.detokenizer.dit import DiT
from paras2s_jax.audio.detokenizer.flow import (
    append_to_cache,
    encode_for_cache,
    euler_schedule,
    solve,
)
from paras2s_jax.audio.detokenizer.vocoder import BigVGAN

NoiseFn = Callable[[int], np.ndarray]  # frames -> float32[frames, mel] standard normal


@dataclasses.dataclass(frozen=True)
class StreamingSchedule:
    """Kimi-Audio's streaming constants (`kimia.py`, `detokenizer/__init__.py`)."""

    chunk_tokens: int = 30
    first_chunk_tokens: int = 30
    look_ahead_tokens: int = 12
    upsample: int = 4  # mel frames per semantic id (50 Hz / 12.5 Hz)
    ode_points: int = 30  # t_span = linspace(0, 1, ode_points): ode_points - 1 evaluations
    max_kv_cache_frames: int = 900
    max_positions: int = 4096

    def __post_init__(self) -> None:
        if min(self.chunk_tokens, self.first_chunk_tokens, self.upsample) < 1:
            raise ValueError("chunk sizes and upsample must be >= 1")
        if self.look_ahead_tokens < 1:  # with 0 the original caches noisy ODE-state keys
            raise ValueError("look_ahead_tokens must be >= 1 (Kimi-Audio uses 12)")
        if self.look_ahead_tokens >= min(self.chunk_tokens, self.first_chunk_tokens):
            raise ValueError("look_ahead_tokens must be smaller than the chunk sizes")

    @property
    def buffer_frames(self) -> int:
        """Frames of the largest chunk input: look-ahead + the largest chunk."""
        return (max(self.chunk_tokens, self.first_chunk_tokens) + self.look_ahead_tokens) \
            * self.upsample


def split_chunks(num_ids: int, schedule: StreamingSchedule) -> list[tuple[int, int]]:
    """[start, end) of each chunk of ids, as `detokenize_audio` cuts them."""
    first = min(num_ids, schedule.first_chunk_tokens)
    chunks = [(0, first)]
    for start in range(first, num_ids, schedule.chunk_tokens):
        chunks.append((start, min(start + schedule.chunk_tokens, num_ids)))
    return chunks


def periodic_hamming(length: int) -> np.ndarray:
    """torch.hamming_window(length) (periodic=True): 0.54 − 0.46 cos(2πn / length)."""
    n = np.arange(length, dtype=np.float64)
    return (0.54 - 0.46 * np.cos(2 * np.pi * n / length)).astype(np.float32)


@nnx.jit
def _vocode(vocoder: BigVGAN, mel: jax.Array) -> jax.Array:
    """One compile per mel length (BigVGAN's edges make padding to buckets inexact)."""
    return vocoder(mel[None])[0]


class Detokenizer:
    """Kimi-Audio's detokenizer: flow-matching DiT + BigVGAN, streamed chunk by chunk."""

    def __init__(self, dit: DiT, vocoder: BigVGAN, *, dtype=jnp.bfloat16,
                 schedule: StreamingSchedule = StreamingSchedule()):
        self.dit, self.vocoder, self.schedule = dit, vocoder, schedule
        self.dtype = jnp.dtype(dtype)
        self.frame_samples = vocoder.config.hop_size
        self.sample_rate = vocoder.config.sampling_rate
        self.vocab_size = dit.config.semantic_vocab_size
        self._dit = nnx.split(dit)
        self._t_ints, self._dts = euler_schedule(schedule.ode_points)

    def _host_dtype(self):
        return ml_dtypes.bfloat16 if self.dtype == jnp.bfloat16 else np.float32

    def detokenize(self, audio_ids: np.ndarray, *, seed: int = 0,
                   noise: NoiseFn | None = None) -> np.ndarray:
        """float32[len(ids) * 4 * 480 (up to the overlap quirk)] mono wav at 24 kHz.

        audio_ids: semantic ids 0..16383 (Kimi audio-stream ids minus 152,064). The ODE
        noise comes from numpy's generator seeded with `seed`, or from `noise(frames)`.
        """
        return np.concatenate(list(self.stream(audio_ids, seed=seed, noise=noise)))

    def stream(self, audio_ids: np.ndarray, *, seed: int = 0,
               noise: NoiseFn | None = None) -> Iterator[np.ndarray]:
        """The wav pieces in the order the original emits them (float32 each)."""
        ids = np.asarray(audio_ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(
                f"detokenize needs a non-empty 1-D array of semantic ids, got shape {ids.shape}"
                " (a reply without audio tokens has nothing to synthesise)")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 \
                or ids.max() >= self.vocab_size:
            raise ValueError(
                f"semantic ids must be integers in [0, {self.vocab_size}); got "
                f"{ids.dtype} in [{ids.min()}, {ids.max()}] (subtract the audio-token offset "
                "152064 from Kimi audio-stream ids)")
        if noise is None:
            rng = np.random.default_rng(seed)
            noise = lambda n: rng.standard_normal((n, self.dit.config.input_size),  # noqa: E731
                                                  dtype=np.float32)
        state = _StreamState(self)
        chunks = split_chunks(ids.size, self.schedule)
        for i, (start, end) in enumerate(chunks):
            yield state.step(ids[start:end], final=i == len(chunks) - 1, noise=noise)


class _StreamState:
    """What the original keeps between chunks: DiT positions/cache, look-ahead ids, overlap."""

    def __init__(self, owner: Detokenizer):
        self.owner = owner
        c, s = owner.dit.config, owner.schedule
        shape = (c.depth, s.max_kv_cache_frames, c.num_heads, c.head_dim)
        self.empty_cache = jnp.zeros(shape, owner.dtype)
        self.look_ahead: np.ndarray | None = None  # frame ids generated but not emitted
        self.pre_mel: np.ndarray | None = None
        self.pre_wav: np.ndarray | None = None
        self.clear_dit()

    def clear_dit(self) -> None:
        self.position = 0
        self.cache_k = self.cache_v = self.empty_cache
        self.cache_len = jnp.int32(0)

    def step(self, ids: np.ndarray, *, final: bool, noise: NoiseFn) -> np.ndarray:
        mel = self.generate_mel(ids, final=final, noise=noise)
        wav = self.overlap(mel, final=final)
        s = self.owner.schedule
        if not final and self.position + 2 * mel.shape[0] > s.max_positions:
            self.clear_dit()  # out of position ids: start a fresh context
        return wav

    def generate_mel(self, ids: np.ndarray, *, final: bool, noise: NoiseFn) -> np.ndarray:
        """De-normalised mel [emitted frames, mel] of one chunk; updates positions and cache."""
        o, s = self.owner, self.owner.schedule
        cfg = o.dit.config
        frames = np.repeat(ids.astype(np.int32), s.upsample)
        if self.look_ahead is not None:
            frames = np.concatenate([self.look_ahead, frames])
        n, buf = frames.size, s.buffer_frames
        held = 0 if final else s.look_ahead_tokens * s.upsample
        emitted = n - held
        if self.position + n > cfg.rope_positions and cfg.use_rope:
            raise ValueError(f"position {self.position + n} exceeds the RoPE table "
                             f"({cfg.rope_positions}); lower StreamingSchedule.max_positions")
        x0 = np.zeros((buf, cfg.input_size), np.float32)
        x0[:n] = np.asarray(noise(n), np.float32).reshape(n, cfg.input_size)
        tokens = np.zeros(buf, np.int32)
        tokens[:n] = frames
        positions = np.minimum(self.position + np.arange(buf), cfg.rope_positions - 1)
        graphdef, params = o._dit
        cache_rows = np.arange(s.max_kv_cache_frames) < int(self.cache_len)
        valid = np.concatenate([cache_rows, np.arange(buf) < n])
        x = solve(graphdef, params, jnp.asarray(x0, o.dtype), tokens, positions, self.cache_k,
                  self.cache_v, valid, o._t_ints, o._dts)
        if not final:
            self.look_ahead = frames[n - held:]
            clean_valid = np.concatenate([cache_rows, np.arange(buf) < emitted])
            clean = jnp.where((jnp.arange(buf) < emitted)[:, None], x, 0)
            k, v = encode_for_cache(graphdef, params, clean, tokens, positions, self.cache_k,
                                    self.cache_v, clean_valid)
            self.cache_k, new_len = append_to_cache(self.cache_k, self.cache_len, k, emitted)
            self.cache_v, _ = append_to_cache(self.cache_v, self.cache_len, v, emitted)
            self.cache_len = new_len
        self.position += emitted
        mel = np.asarray(x[:emitted])
        if cfg.normalize_mel:  # `x * std + mean`: float32 math, rounded to x's dtype per op
            mel = (mel.astype(np.float32) * np.float32(cfg.mel_std)).astype(mel.dtype)
            mel = (mel.astype(np.float32) + np.float32(cfg.mel_mean)).astype(mel.dtype)
        return mel

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        wav = _vocode(self.owner.vocoder, jnp.asarray(mel, self.owner.dtype))
        return np.asarray(wav).astype(self.owner._host_dtype())

    def overlap(self, mel: np.ndarray, *, final: bool) -> np.ndarray:
        """The original's wav overlap/cross-fade for one chunk (see the module docstring)."""
        hop = self.owner.frame_samples
        chunk = mel.shape[0]
        if self.pre_mel is None:
            wav = self.vocode(mel)
            if final:
                return wav.astype(np.float32)
            half = hop * chunk // 2
            self.pre_wav, self.pre_mel = wav[-half:], mel[-chunk // 2:]
            return wav[:half].astype(np.float32)
        wav = self.vocode(np.concatenate([self.pre_mel, mel]))
        if final:
            self.pre_mel = self.pre_wav = None
            return wav.astype(np.float32)
        prev = self.pre_wav.shape[0]
        gen = 2 * prev if wav.shape[0] > 2 * prev else wav.shape[0] // 2
        out = wav[:gen].copy()
        window = periodic_hamming(gen).astype(wav.dtype)
        fade = gen // 2
        out[:fade] = (self.pre_wav[:fade] * window[-fade:]).astype(wav.dtype) \
            + (out[:fade] * window[:fade]).astype(wav.dtype)
        rest = wav.shape[0] - gen
        self.pre_wav, self.pre_mel = wav[-rest:], mel[-(rest // hop):]
        return out.astype(np.float32)
