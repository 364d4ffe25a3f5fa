"""Checkpoint import: peak host memory of the streaming importer vs load-then-convert.

    python -m launch.speed convert [--size-gb 2.2]

Writes a synthetic bf16 checkpoint in the real Kimi-Audio layout, then imports
it in a fresh process with our streaming importer and, as the peer, with the usual
"load the whole state dict, then convert" path (`safetensors.torch.load_file`). Peak RSS
is the kernel's high-water mark (VmHWM) reset after start-up; the host memory the
importer needs beyond the model it builds is
    overhead = peak RSS - start-up RSS - bytes of the loaded model
(on CPU the model itself lives in host memory; on accelerators it does not). The target
is overhead <= 1.3 x the largest single tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024**3


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def bench_config(size_gb: float):
    """A Kimi-Audio-shaped config of roughly `size_gb` GB in bf16 (hidden 2048)."""
    from paras2s_jax.model import KimiAudioConfig, tiny

    per_layer = 4 * 2048 * 2048 + 3 * 2048 * 5632  # attention (GQA-ish) + SwiGLU
    vocab = 40960
    layers = max(2, int((size_gb * 1e9 / 2 - 3 * vocab * 2048) / per_layer))
    return KimiAudioConfig(
        vocab_size=vocab, hidden_size=2048, intermediate_size=5632, num_layers=layers,
        num_heads=16, num_kv_heads=16, mimo_layers=2, mimo_from_layer=layers - 3,
        adaptor_input_dim=4 * 1280, text_vocab_size=1024, audio_token_offset=1024,
        audio_codebook_size=vocab - 1024, special=tiny().special,
        param_dtype="bfloat16", dtype="bfloat16",
    )


def _convert_child(directory: str, mode: str) -> None:
    """Runs in a fresh process: import the checkpoint, print a JSON line of figures."""
    import jax
    import numpy as np
    from flax import nnx

    from paras2s_jax.checkpoint import import_hf, iter_tensors, read_config
    from paras2s_jax.checkpoint.hf_keys import key_specs
    from paras2s_jax.model import KimiAudio

    config = read_config(directory)
    abstract = nnx.eval_shape(lambda: KimiAudio(config, rngs=nnx.Rngs(0)))
    specs = key_specs(abstract)
    jax.block_until_ready(jax.numpy.zeros(1))  # start the backend before measuring
    baseline = _rss("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    if mode == "stream":
        model = import_hf(directory)
        state = nnx.state(model)
    else:  # peer: the whole state dict in host memory, then converted
        import safetensors.torch
        import torch

        index = json.loads((Path(directory) / "model.safetensors.index.json").read_text())
        tensors = {}
        for shard in sorted(set(index["weight_map"].values())):
            tensors.update(safetensors.torch.load_file(str(Path(directory) / shard)))
        flat = {}
        for key, spec in specs.items():
            host = tensors[key].to(torch.float32).numpy().astype(config.storage_dtype)
            flat[spec.path] = jax.device_put(spec.to_flax(host))
        del tensors
        state = flat
    jax.block_until_ready(jax.tree.leaves(state))
    seconds = time.perf_counter() - start
    model_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    largest = max(int(np.prod(s.hf_shape)) * 2 for s in specs.values())
    checkpoint = sum(np.asarray(v).nbytes for _, v in iter_tensors(directory))
    print(json.dumps({
        "mode": mode, "seconds": seconds, "baseline": baseline, "peak": _rss("VmHWM"),
        "model_bytes": model_bytes, "largest_tensor": largest, "checkpoint_bytes": checkpoint,
    }))


def run_convert(config, directory: Path) -> dict[str, dict]:
    """Write the synthetic checkpoint (unless there), import it both ways, compare."""
    from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint

    if not (directory / "model.safetensors.index.json").exists():
        t0 = time.perf_counter()
        write_random_checkpoint(directory, config, num_layer_shards=8, tokenizer=False)
        print(f"wrote synthetic checkpoint to {directory} in {time.perf_counter() - t0:.0f} s")
    results = {}
    for mode in ("stream", "peer"):
        out = subprocess.run(
            [sys.executable, "-m", "launch.speed.suites.convert", str(directory), mode],
            capture_output=True, text=True, check=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        ).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    s, p = results["stream"], results["peer"]
    largest = s["largest_tensor"]
    print(f"checkpoint: {s['checkpoint_bytes'] / GIB:.2f} GiB bf16, largest tensor "
          f"{largest / GIB:.3f} GiB, loaded model {s['model_bytes'] / GIB:.2f} GiB")
    print(f"{'importer':<34}{'peak RSS':>10}{'overhead':>10}{'x largest':>11}{'time':>8}")
    for name, r in (("paras2s_jax import_hf (streaming)", s),
                    ("peer: load_file + convert", p)):
        over = r["peak"] - r["baseline"] - r["model_bytes"]
        r["overhead"] = over
        print(f"{name:<34}{r['peak'] / GIB:>9.2f}G{over / GIB:>9.2f}G"
              f"{over / largest:>10.2f}x{r['seconds']:>7.1f}s")
    print(f"peak RSS, streaming / peer: {s['peak'] / p['peak']:.2f}; "
          f"target overhead <= 1.3 x largest tensor: "
          f"{'met' if s['overhead'] <= 1.3 * largest else 'NOT met'}")
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-gb", type=float, default=None,
                        help="synthetic checkpoint size in GB (default 2.2; "
                             "the tiny model at --size minute)")
    parser.add_argument("--workdir",
                        help="keep the checkpoint here for reuse (default: a temp dir, removed)")


def run(args: argparse.Namespace) -> dict:
    from paras2s_jax.model import tiny

    if args.size == "minute" and args.size_gb is None:
        config, name = tiny(param_dtype="bfloat16", dtype="bfloat16"), "tiny"
    else:
        size = args.size_gb or 2.2
        config, name = bench_config(size), f"synthetic_{size:g}gb"
    if args.workdir:  # kept for reuse by the next run
        return run_convert(config, Path(args.workdir) / name)
    with tempfile.TemporaryDirectory(prefix="paras2s_convert_") as root:
        return run_convert(config, Path(root) / name)


if __name__ == "__main__":  # the measured child process: DIRECTORY MODE
    _convert_child(sys.argv[1], sys.argv[2])
