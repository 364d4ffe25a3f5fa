"""Smoke run of the tiny Kimi-Audio: config, born-sharded init, forward, KV-cache decode.

    python launch/smoke.py [--devices 8]

Prints the output shapes, the parameter count of the tiny model and of the published
7B configuration (from shapes alone, no memory needed), and the mesh it ran on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1, help="fake CPU devices (1, 2, 4, 8)")
    parser.add_argument("--fsdp", type=int, default=1, help="FSDP axis size (data takes the rest)")
    parser.add_argument("--tensor", type=int, default=1, help="tensor-parallel axis size")
    args = parser.parse_args()
    if args.devices > 1:
        os.environ.setdefault(
            "XLA_FLAGS", f"--xla_force_host_platform_device_count={args.devices}"
        )
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from paras2s_jax.model import KimiAudio, KVCache, count_params, kimi_audio_7b, tiny
    from paras2s_jax.sharding import MeshConfig, batch_sharding, create_sharded, make_mesh

    cfg = tiny()
    mesh = make_mesh(MeshConfig(data=-1, fsdp=args.fsdp, tensor=args.tensor))
    t0 = time.perf_counter()
    model = create_sharded(lambda: KimiAudio(cfg, rngs=nnx.Rngs(0)), mesh)
    batch = mesh.shape["data"] * mesh.shape["fsdp"] * 2
    text = jnp.full((batch, 12), cfg.special.text_blank, jnp.int32)
    codes = jnp.arange(batch * 12, dtype=jnp.int32).reshape(batch, 12) % cfg.audio_codebook_size
    audio = codes + cfg.audio_token_offset
    text, audio = (jax.device_put(x, batch_sharding(mesh, 2)) for x in (text, audio))

    out = nnx.jit(lambda m, t, a: m(t, a))(model, text, audio)
    cache = KVCache.init(cfg, batch, max_length=16)
    step = nnx.jit(lambda m, t, a, c: m(t, a, cache=c))
    prefill = step(model, text[:, :8], audio[:, :8], cache)
    decoded = step(model, text[:, 8:9], audio[:, 8:9], prefill.cache)
    gap = float(jnp.abs(decoded.text_logits[:, 0] - out.text_logits[:, 8]).max())

    devices = f"{jax.device_count()} {jax.default_backend()} device(s)"
    print(f"mesh              : {dict(mesh.shape)} on {devices}")
    print(f"tiny config       : hidden {cfg.hidden_size}, {cfg.num_layers} trunk + "
          f"{cfg.mimo_layers} audio-branch layers, vocab {cfg.vocab_size}")
    print(f"tiny parameters   : {count_params(model):,}")
    print(f"input streams     : text {tuple(text.shape)}, audio {tuple(audio.shape)}")
    print(f"text logits       : {tuple(out.text_logits.shape)} {out.text_logits.dtype}")
    print(f"audio logits      : {tuple(out.audio_logits.shape)} {out.audio_logits.dtype}")
    print(f"KV-cache decode   : max |step logits - full forward| = {gap:.2e}")
    big = nnx.eval_shape(lambda: KimiAudio(kimi_audio_7b(), rngs=nnx.Rngs(0)))
    print(f"Kimi-Audio-7B     : {count_params(big):,} parameters (from shapes)")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
