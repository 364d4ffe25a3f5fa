"""16 kHz audio -> GLM-4-Voice codes (12.5 Hz), batched and jitted once per length bucket.

What the reference front end does (`speech_tokenizer/utils.extract_speech_token` with
HF `WhisperFeatureExtractor`), and how it is reproduced here:

- each clip is cut into independent 30 s segments (positions restart in each);
- a call pads all its segments with zeros to the longest one, rounded up to a multiple
  of 1280 samples (`padding="longest", pad_to_multiple_of=1280`); Kimi-Audio tokenises
  one clip per call, so a clip's padded length P is its longest segment rounded up;
- 128-bin log-mel over the padded segment (centred STFT, reflect padding at both ends
  of the P samples), floor at the segment's own max - 8, (x + 4) / 4;
- codes are kept for the real samples only: ceil(L / 1280) per segment of L samples.

To compile once per length bucket rather than once per P, each segment is further
zero-padded to a bucket of S >= P samples (a power of two in tokens, at most one
window). Before that, the 200 samples after P are filled with the reflection the
reference's STFT would have seen there, and only the first P / 160 frames count
towards the max: every kept code is then exactly the reference's. Rows of any clips
share a batch (padded to a power of two), so a clip's codes never depend on the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from paras2s_jax.audio.features import segment_bounds
from paras2s_jax.audio.mel import CHUNK_SECONDS, HOP_LENGTH, N_FFT, SAMPLE_RATE, log_mel_spectrogram
from paras2s_jax.audio.vq_encoder import SAMPLES_PER_FRAME, VQEncoder

AUDIO_TOKEN_OFFSET = 152064  # Kimi-Audio's id of code 0 (`kimia_token_offset`)
MIN_BUCKET_TOKENS = 64  # 5.12 s: few compilations for typical prompts and replies


@nnx.jit
def _encode(
    encoder: VQEncoder, audio: jax.Array, padded: jax.Array, num_samples: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """float32[B, S] -> (codes int32[B, S / 1280], pooled float32[B, S / 1280, E])."""
    mel = log_mel_spectrogram(audio, encoder.config.n_mels, num_frames=padded // HOP_LENGTH)
    return encoder(mel, num_samples)


@dataclasses.dataclass(frozen=True)
class _Row:
    """One segment: which clip it belongs to, its samples and its clip's padded length."""

    clip: int
    audio: np.ndarray
    padded: int


class SpeechTokenizer:
    """Wraps a loaded `VQEncoder`: `tokenize(audio)` / `tokenize_batch(clips)` -> codes."""

    def __init__(self, encoder: VQEncoder, batch_size: int = 8):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.encoder = encoder
        self.batch_size = batch_size
        c = encoder.config
        self.samples_per_token = c.samples_per_token
        # 30 s as in the reference, unless the encoder's position table is shorter.
        self.segment_samples = min(CHUNK_SECONDS * SAMPLE_RATE, c.n_audio_ctx * SAMPLES_PER_FRAME)
        self.max_tokens = self.segment_samples // self.samples_per_token

    def _bucket(self, padded: int) -> int:
        """Samples of the length bucket holding a segment padded to `padded` samples."""
        tokens = padded // self.samples_per_token
        bucket = max(MIN_BUCKET_TOKENS, 1 << (tokens - 1).bit_length())
        return max(padded, min(bucket, self.max_tokens) * self.samples_per_token)

    def _rows(self, clips: Sequence[np.ndarray]) -> list[_Row]:
        rows = []
        for index, clip in enumerate(clips):
            clip = np.asarray(clip, np.float32)
            if clip.ndim != 1:
                raise ValueError(f"clip {index}: audio must be mono float[samples], got "
                                 f"shape {clip.shape}")
            if clip.size == 0:
                raise ValueError(f"clip {index}: audio is empty (no samples to tokenise)")
            if not np.isfinite(clip).all():
                raise ValueError(f"clip {index}: audio holds NaN or Inf samples")
            bounds = segment_bounds(clip.size, self.segment_samples)
            longest = max(end - start for start, end in bounds)
            padded = -(-longest // self.samples_per_token) * self.samples_per_token
            rows += [_Row(index, clip[start:end], padded) for start, end in bounds]
        return rows

    def _run(self, rows: list[_Row], bucket: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode rows of one bucket in one call; the batch is padded to a power of two."""
        size = min(self.batch_size, 1 << (len(rows) - 1).bit_length())
        audio = np.zeros((size, bucket), np.float32)
        padded = np.full((size,), self.samples_per_token, np.int32)
        num = np.ones((size,), np.int32)
        tail = N_FFT // 2  # samples right of P that the reference's last frames see
        for r, row in enumerate(rows):
            audio[r, : row.audio.size] = row.audio
            if bucket > row.padded:  # torch's reflect padding at P: x[P + k] = x[P - 2 - k]
                audio[r, row.padded: row.padded + tail] = audio[r, row.padded - 2 - np.arange(tail)]
            padded[r], num[r] = row.padded, row.audio.size
        codes, pooled = _encode(self.encoder, audio, padded, num)
        return np.asarray(codes), np.asarray(pooled)

    def encode(self, clips: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per clip: (codes int32[T], pre-quantisation states float32[T, E]), T = sum over
        its segments of ceil(L / 1280). Clips are 16 kHz mono float arrays."""
        rows = self._rows(clips)
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(rows)
        buckets: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            buckets.setdefault(self._bucket(row.padded), []).append(i)
        for bucket, members in sorted(buckets.items()):
            for start in range(0, len(members), self.batch_size):
                part = members[start: start + self.batch_size]
                codes, pooled = self._run([rows[i] for i in part], bucket)
                for r, i in enumerate(part):
                    keep = -(-rows[i].audio.size // self.samples_per_token)
                    results[i] = (codes[r, :keep], pooled[r, :keep])
        per_clip = []
        for index in range(len(clips)):
            mine = [res for row, res in zip(rows, results, strict=True) if row.clip == index]
            per_clip.append((np.concatenate([m[0] for m in mine]),
                             np.concatenate([m[1] for m in mine])))
        return per_clip

    def tokenize_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Codes int32[T_i] in [0, codebook_size) for each 16 kHz mono clip."""
        return [codes for codes, _ in self.encode(clips)]

    def tokenize(self, audio: np.ndarray) -> np.ndarray:
        """Codes int32[T] of one 16 kHz mono clip; add `AUDIO_TOKEN_OFFSET` for Kimi-Audio."""
        return self.tokenize_batch([audio])[0]
