"""Real-time factors of the speech models: tokenizer, detokenizer DiT, BigVGAN vocoder.

    python -m launch.speed speech [--seconds 8] [--dit-depth N]

RTF = compute seconds / audio seconds (below 1: faster than real time), after one
warm-up call (compilation excluded), medians of --repeats calls. The tokenizer turns
`--seconds` of 16 kHz audio into codes (fp32, as GLM-4-Voice runs it); the detokenizer
streams those codes to 24 kHz audio in bf16 (Kimi-Audio's 30-token chunks, 29 Euler
steps, look-ahead and cache passes); its time is split into the vocoder's calls (every
chunk's BigVGAN pass) and the rest (the DiT). Sizes: minute = tiny models; bench = the
published tokenizer and vocoder, and the published DiT width with `--dit-depth` blocks
(2 by default: the 16-block DiT needs ~5 TFLOP per second of speech, hours on a small
CPU; the per-block cost is printed); device = every published size. Weights are random
(timing does not depend on their values).

First, the tokenizer against the original algorithm in PyTorch: GLM-4-Voice's
`WhisperVQEncoder` as the repository's parity reference writes it (transformers'
`WhisperEncoderLayer`s with sdpa attention, causal convolutions, the block mask, average
pooling, the addmm codebook search) fed by HF `WhisperFeatureExtractor`, on the same
random `glm-4-voice-tokenizer` directory (both sides load its files), the same
`--tokenizer-seconds` of audio (one clip, as Kimi-Audio tokenises it), in one process on
the same cores, interleaved. bench and device sizes: the published 16 layers x 1280 on a
full 30 s segment; minute: the tiny tokenizer. The ids of both sides are compared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=8.0, help="audio length")
    parser.add_argument("--dit-depth", type=int, default=None,
                        help="DiT blocks (default: 2 at --size bench, published otherwise)")
    parser.add_argument("--tokenizer-seconds", type=float, default=30.0,
                        help="audio length of the tokenizer vs PyTorch comparison")


def _speech_clip(seconds: float) -> np.ndarray:
    """16 kHz mono test audio: a gliding tone with a slow envelope and a little noise."""
    t = np.arange(int(seconds * 16000)) / 16000
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * (150 * t + 40 * t**2)) * (1 + np.sin(3 * t))
            + noise).astype(np.float32)


def tokenizer_vs_torch(size: str, seconds: float, repeats: int) -> dict:
    """Our tokenizer (jit, fp32) vs the PyTorch original algorithm on one clip; both load
    the same random published-layout directory. Prints the table, returns the record."""
    import tempfile
    from pathlib import Path

    import torch
    from transformers import WhisperFeatureExtractor

    from launch.speed.common import interleaved, table
    from paras2s_jax.audio.random_speech import speech_presets, write_random_vq_checkpoint
    from paras2s_jax.audio.speech_tokenizer import SpeechTokenizer
    from paras2s_jax.audio.vq_checkpoint import load_vq_encoder
    from tests.audio.vq_reference import load_reference, reference_tokenize

    config, _ = speech_presets("tiny" if size == "minute" else "kimi_audio_7b")
    seconds = 2.0 if size == "minute" else seconds
    audio = _speech_clip(seconds)
    with tempfile.TemporaryDirectory() as tmp:
        write_random_vq_checkpoint(Path(tmp), config, seed=0)
        ours = SpeechTokenizer(load_vq_encoder(tmp))
        peer = load_reference(Path(tmp), attn_implementation="sdpa")
        extractor = WhisperFeatureExtractor.from_pretrained(tmp)

    def theirs():
        with torch.inference_mode():
            return reference_tokenize(peer, extractor, audio)[0]

    ids, ref_ids = ours.tokenize(audio), theirs()
    t = interleaved({"ours": lambda: ours.tokenize(audio), "pytorch": theirs}, repeats)
    ratio = t.median("pytorch") / t.median("ours")
    cpu_ratio = t.median_cpu("pytorch") / t.median_cpu("ours")
    agree = int((ids == ref_ids).sum())
    print(f"tokenizer vs PyTorch (GLM-4-Voice WhisperVQEncoder: transformers layers, sdpa), "
          f"{config.n_audio_layer} layers x {config.n_audio_state}, {seconds:.0f} s clip, "
          f"fp32, torch threads {torch.get_num_threads()}; medians of {repeats} interleaved "
          "rounds after a warm-up")
    print(table(["", "wall s", "CPU s", "RTF", "spread"],
                [[name, t.median(name), t.median_cpu(name), t.median(name) / seconds,
                  t.spread(name)] for name in ("ours", "pytorch")]))
    print(f"tokenizer speed ratio ours/pytorch: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU time; "
          f"ids equal {agree}/{ids.size}")
    return {"timings": t.as_dict(), "ratio": ratio, "ratio_cpu": cpu_ratio,
            "ids_equal": agree, "codes": int(ids.size), "seconds": seconds,
            "layers": config.n_audio_layer, "width": config.n_audio_state,
            "torch_threads": torch.get_num_threads()}


def _models(size: str, dit_depth: int | None):
    import jax.numpy as jnp
    from flax import nnx

    from paras2s_jax.audio.detokenizer import BigVGAN, BigVGANConfig, DiT, DiTConfig
    from paras2s_jax.audio.detokenizer.random_checkpoint import detokenizer_preset
    from paras2s_jax.audio.random_speech import speech_presets
    from paras2s_jax.audio.vq_encoder import VQEncoder

    preset = "tiny" if size == "minute" else "kimi_audio_7b"
    tokenizer_config, _ = speech_presets(preset)
    dit_yaml, vocoder_json = detokenizer_preset(preset)
    depth = dit_depth or (2 if size == "bench" else None)
    if depth:
        dit_yaml = {**dit_yaml, "model": {"dit": {**dit_yaml["model"]["dit"], "depth": depth}}}
    tokenizer = VQEncoder(tokenizer_config, rngs=nnx.Rngs(0))
    dit = DiT(DiTConfig.from_dict(dit_yaml), dtype=jnp.bfloat16)
    vocoder = BigVGAN(BigVGANConfig.from_dict(vocoder_json), dtype=jnp.bfloat16)
    return tokenizer, dit, vocoder


def run(args: argparse.Namespace) -> dict:
    import gc
    import statistics

    from launch.speed.common import table

    # First and on its own: the peer's weights are freed before the detokenizer is built.
    versus_torch = tokenizer_vs_torch(args.size, args.tokenizer_seconds, args.repeats)
    gc.collect()
    from paras2s_jax.audio.detokenizer import Detokenizer, streaming
    from paras2s_jax.audio.speech_tokenizer import SpeechTokenizer

    seconds = 2.0 if args.size == "minute" else args.seconds
    encoder, dit, vocoder = _models(args.size, args.dit_depth)
    tokenizer = SpeechTokenizer(encoder)
    detok = Detokenizer(dit, vocoder)
    audio = _speech_clip(seconds)
    codes = tokenizer.tokenize(audio)
    ids = np.arange(codes.size) % min(encoder.config.codebook_size, dit.config.semantic_vocab_size)

    vocode_time = [0.0]
    plain_vocode = streaming._StreamState.vocode

    def timed_vocode(self, mel):  # the vocoder's share of each streamed chunk
        t0 = time.perf_counter()
        out = plain_vocode(self, mel)
        vocode_time[0] += time.perf_counter() - t0
        return out

    streaming._StreamState.vocode = timed_vocode
    try:
        tok_s, detok_s, voc_s = [], [], []
        for i in range(args.repeats + 1):  # the first round compiles
            t0 = time.perf_counter()
            tokenizer.tokenize(audio)
            t1 = time.perf_counter()
            vocode_time[0] = 0.0
            wav = detok.detokenize(ids, seed=0)
            t2 = time.perf_counter()
            if i:
                tok_s.append(t1 - t0)
                detok_s.append(t2 - t1)
                voc_s.append(vocode_time[0])
    finally:
        streaming._StreamState.vocode = plain_vocode
    out_seconds = wav.size / detok.sample_rate
    tok, det, voc = (statistics.median(x) for x in (tok_s, detok_s, voc_s))
    c = dit.config
    rows = [
        ["tokenizer (fp32)", f"{encoder.config.n_audio_layer} layers x "
         f"{encoder.config.n_audio_state}", seconds, tok, tok / seconds],
        ["DiT (bf16, 29 steps)", f"{c.depth} blocks x {c.hidden_size}", out_seconds,
         det - voc, (det - voc) / out_seconds],
        ["vocoder (bf16)", f"{vocoder.config.upsample_initial_channel} channels",
         out_seconds, voc, voc / out_seconds],
        ["detokenizer (DiT + vocoder)", "", out_seconds, det, det / out_seconds],
    ]
    print(f"speech models, {seconds:.1f} s in ({codes.size} codes), {out_seconds:.2f} s out; "
          f"medians of {args.repeats} calls after a compiling one")
    print(table(["stage", "size", "audio s", "compute s", "RTF"], rows))
    per_block = (det - voc) / out_seconds / c.depth
    print(f"DiT per block: RTF {per_block:.3g} (x16 blocks for the published DiT: "
          f"{16 * per_block:.3g})")
    return {"seconds_in": seconds, "codes": int(codes.size), "seconds_out": out_seconds,
            "tokenizer_rtf": tok / seconds, "dit_rtf": (det - voc) / out_seconds,
            "vocoder_rtf": voc / out_seconds, "detokenizer_rtf": det / out_seconds,
            "dit_depth": c.depth, "dit_rtf_per_block": per_block,
            "tokenizer_vs_pytorch": versus_torch,
            "samples_s": {"tokenizer": tok_s, "detokenizer": detok_s, "vocoder": voc_s}}
