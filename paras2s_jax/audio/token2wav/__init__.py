"""Qwen2.5-Omni's token2wav: talker codec ids -> 24 kHz wav (flow-matching DiT + BigVGAN).

    from paras2s_jax.audio.token2wav import load_token2wav
    t2w = load_token2wav("/ckpt/Qwen2.5-Omni-7B")        # config.json + safetensors
    wav = t2w(codes, ref_mel, speaker, noise)             # noise: float32[B, 2N, 80]

codes int[B, N] are the talker's codec ids up to its end-of-speech id; ref_mel
float[B, T_ref, 80] and speaker float[B, 192] are a voice's `ref_mel` and `cond` from the
checkpoint's `spk_dict.pt` presets (not read by this package). Like transformers, run it
in float32 (the default).
"""

from paras2s_jax.audio.token2wav.bigvgan import OmniBigVGAN, process_mel
from paras2s_jax.audio.token2wav.checkpoint import (
    Token2WavCheckpointError,
    export_state_dict,
    load_token2wav,
    read_config,
    tensor_map,
)
from paras2s_jax.audio.token2wav.config import (
    OmniBigVGANConfig,
    OmniDiTConfig,
    Token2WavConfig,
    Token2WavConfigError,
)
from paras2s_jax.audio.token2wav.dit import OmniDiT
from paras2s_jax.audio.token2wav.ecapa import ECAPA
from paras2s_jax.audio.token2wav.model import Token2Wav
from paras2s_jax.audio.token2wav.ode import rk4_step, sample_mel, solve, time_points

__all__ = [
    "ECAPA", "OmniBigVGAN", "OmniBigVGANConfig", "OmniDiT", "OmniDiTConfig", "Token2Wav",
    "Token2WavCheckpointError", "Token2WavConfig", "Token2WavConfigError",
    "export_state_dict", "load_token2wav", "process_mel", "read_config", "rk4_step",
    "sample_mel", "solve", "tensor_map", "time_points",
]
