"""A tiny random transformers Qwen2.5-Omni saved in the published layout (several shards)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from paras2s_jax.model.qwen_omni.audio_encoder import AudioEncoderConfig
from paras2s_jax.model.qwen_omni.config import TalkerConfig, ThinkerTextConfig
from paras2s_jax.model.qwen_omni.model import tiny


def hf_config_dict(thinker: ThinkerTextConfig, talker: TalkerConfig,
                   audio: AudioEncoderConfig) -> dict:
    """Keyword arguments of transformers' `Qwen2_5OmniConfig` for our three configs, with
    tiny vision and token2wav parts (those are not compared here)."""

    def rope(c):
        return {"rope_type": "default", "rope_theta": c.rope_theta,
                "mrope_section": list(c.mrope_section)}

    text = dict(vocab_size=thinker.vocab_size, hidden_size=thinker.hidden_size,
                intermediate_size=thinker.intermediate_size,
                num_hidden_layers=thinker.num_layers, num_attention_heads=thinker.num_heads,
                num_key_value_heads=thinker.num_kv_heads, rms_norm_eps=thinker.rms_norm_eps,
                rope_parameters=rope(thinker), tie_word_embeddings=False)
    thinker_cfg = dict(
        text_config=text,
        audio_config=dict(num_mel_bins=audio.num_mel_bins, encoder_layers=audio.encoder_layers,
                          encoder_attention_heads=audio.encoder_attention_heads,
                          encoder_ffn_dim=audio.encoder_ffn_dim, d_model=audio.d_model,
                          output_dim=audio.output_dim, n_window=audio.n_window,
                          max_source_positions=audio.max_source_positions),
        vision_config=dict(depth=1, hidden_size=8, intermediate_size=8, num_heads=2,
                           out_hidden_size=thinker.hidden_size, fullatt_block_indexes=[0]),
        audio_token_index=thinker.audio_token_index, image_token_index=121,
        video_token_index=122, vision_start_token_id=125,
        audio_start_token_id=thinker.audio_start_token_id,
        audio_end_token_id=thinker.audio_end_token_id, bos_token_id=thinker.bos_token_id,
        eos_token_id=thinker.eos_token_id, pad_token_id=thinker.pad_token_id)
    talker_cfg = dict(
        vocab_size=talker.vocab_size, embedding_size=talker.embedding_size,
        hidden_size=talker.hidden_size, intermediate_size=talker.intermediate_size,
        num_hidden_layers=talker.num_layers, num_attention_heads=talker.num_heads,
        num_key_value_heads=talker.num_kv_heads, head_dim=talker.head_dim,
        rms_norm_eps=talker.rms_norm_eps, rope_parameters=rope(talker),
        tts_codec_start_token_id=talker.codec_start_token_id,
        tts_codec_end_token_id=talker.codec_end_token_id,
        tts_codec_pad_token_id=talker.codec_pad_token_id,
        tts_codec_mask_token_id=talker.codec_mask_token_id,
        tts_text_start_token_id=talker.text_start_token_id,
        tts_text_end_token_id=talker.text_end_token_id,
        tts_text_pad_token_id=talker.text_pad_token_id,
        audio_token_index=thinker.audio_token_index, image_token_index=121, video_token_index=122)
    token2wav = dict(
        dit_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, head_dim=8,
                        emb_dim=8, enc_emb_dim=8, enc_dim=8, enc_channels=[8, 8, 8, 8, 16],
                        enc_attention_channels=8, enc_se_channels=8, num_embeds=64, mel_dim=8,
                        look_ahead_layers=[0], look_backward_layers=[0]),
        bigvgan_config=dict(mel_dim=8, upsample_initial_channel=8, upsample_rates=[2, 2],
                            upsample_kernel_sizes=[4, 4]))
    return dict(thinker_config=thinker_cfg, talker_config=talker_cfg, token2wav_config=token2wav)


def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial norm scales (around 1) and biases in the thinker and talker, and
    matrices of unit gain (std 1/sqrt(fan_in)) so attention scores, and with them the
    positions, weigh in the outputs (the default 0.02 init leaves attention ~uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(("thinker.model.language_model", "thinker.lm_head",
                                    "thinker.model.audio_tower", "talker")):
                continue
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name or "ln_post" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.3 * noise)
            elif "embed_tokens" in name:
                p.copy_(noise)
            elif p.ndim == 3:  # audio conv [out, in, k]
                p.copy_(noise / (p.shape[1] * p.shape[2]) ** 0.5)
            else:
                p.copy_(noise / p.shape[1] ** 0.5)


@dataclasses.dataclass
class OmniReference:
    model: torch.nn.Module  # transformers' Qwen2_5OmniForConditionalGeneration
    directory: object  # its save_pretrained directory
    thinker: ThinkerTextConfig
    talker: TalkerConfig
    audio: AudioEncoderConfig


@pytest.fixture(scope="session")
def omni_reference(tmp_path_factory) -> OmniReference:
    """The tiny reference model, saved with `max_shard_size` small enough for many shards."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    config = tiny()
    thinker, talker, audio = config.thinker, config.talker, config.audio
    torch.manual_seed(0)
    config = Qwen2_5OmniConfig(**hf_config_dict(thinker, talker, audio))
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    perturb_(model, seed=0)
    directory = tmp_path_factory.mktemp("omni_tiny")
    model.save_pretrained(directory, max_shard_size="40KB")
    return OmniReference(model, directory, thinker, talker, audio)


def left_padded(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """ids int64[B, T] and mask bool[B, T] of token rows, left-padded to the longest."""
    total = max(map(len, rows))
    ids = np.full((len(rows), total), pad, np.int64)
    mask = np.zeros((len(rows), total), bool)
    for r, row in enumerate(rows):
        ids[r, total - len(row):] = row
        mask[r, total - len(row):] = True
    return ids, mask


def audio_prompt(rng: np.random.Generator, c: ThinkerTextConfig, spans: list[int],
                 text: int = 3) -> list[int]:
    """Text tokens with an audio-start, `n` audio placeholders and an audio-end per span."""
    words = lambda n: rng.integers(0, 100, n).tolist()  # noqa: E731  ordinary text ids
    row = words(text)
    for n in spans:
        row += [c.audio_start_token_id] + [c.audio_token_index] * n + [c.audio_end_token_id]
        row += words(text)
    return row
