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
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=8.0, help="audio length")
    parser.add_argument("--dit-depth", type=int, default=None,
                        help="DiT blocks (default: 2 at --size bench, published otherwise)")


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
    import statistics

    import numpy as np

    from launch.speed.common import table
    from paras2s_jax.audio.detokenizer import Detokenizer, streaming
    from paras2s_jax.audio.speech_tokenizer import SpeechTokenizer

    seconds = 2.0 if args.size == "minute" else args.seconds
    encoder, dit, vocoder = _models(args.size, args.dit_depth)
    tokenizer = SpeechTokenizer(encoder)
    detok = Detokenizer(dit, vocoder)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(3 * t))).astype(np.float32)
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
            "samples_s": {"tokenizer": tok_s, "detokenizer": detok_s, "vocoder": voc_s}}
