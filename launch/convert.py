"""Convert Kimi-Audio and Qwen2.5-Omni checkpoints between Hugging Face safetensors and Orbax.

    # HF directory (config.json, model.safetensors.index.json, shards, tokenizer files)
    # -> Orbax, each tensor placed straight onto its shard of the mesh
    python launch/convert.py import --hf /path/Kimi-Audio-7B-Instruct --out ckpt/kimi \
        --fsdp 8 --param-dtype bfloat16

    # Orbax -> HF safetensors with the original key names, config.json fields and the
    # checkpoint's other files (modeling code, tokenizer, whisper-large-v3/, detokenizer,
    # vocoder), so it loads in the PyTorch code as the original did
    python launch/convert.py export --checkpoint ckpt/kimi --out hf_out --max-shard-gb 5
    # a trained model: the files come from the imported checkpoint it started from
    python launch/convert.py export --checkpoint runs/sft/checkpoints/600 --assets ckpt/kimi \
        --out hf_sft

    # a small random checkpoint in the real layout (no weights needed)
    python launch/convert.py random --out /tmp/kimi_tiny --preset tiny

    # Qwen2.5-Omni: the family is read from config.json (model_type / architectures) on
    # import and from the Orbax config on export; every tensor the JAX model does not
    # hold (token2wav.*, the vision tower) and every other file (spk_dict.pt, tokenizer)
    # is kept in hf_files/ and written back unchanged
    python launch/convert.py import --hf /path/Qwen2.5-Omni-7B --out ckpt/omni
    python launch/convert.py export --checkpoint ckpt/omni --out omni_out
    python launch/convert.py random --family qwen25_omni --out /tmp/omni_tiny --dtype float32

    # random speech checkpoints in their published layouts: glm-4-voice-tokenizer/,
    # whisper-large-v3/, audio_detokenizer/, vocoder/ (the tiny preset fits the tiny
    # Kimi-Audio: 256 codes, Whisper width 32)
    python launch/convert.py random-speech --out /tmp/speech_tiny --preset tiny
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOKENIZER_FILES = ("tiktoken.model", "tokenizer_config.json")
TOKENIZER_DIR = "tokenizer"


def _mesh(args: argparse.Namespace):
    import jax

    from paras2s_jax.sharding import MeshConfig, make_mesh

    if jax.device_count() == 1 and args.fsdp == args.tensor == 1:
        return None
    return make_mesh(MeshConfig(data=-1, fsdp=args.fsdp, tensor=args.tensor))


def _hf_family(hf_dir: str) -> str:
    import json

    from paras2s_jax.model.families import KIMI_AUDIO, QWEN25_OMNI
    from paras2s_jax.model.qwen_omni.store import is_qwen_omni_hf

    path = Path(hf_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"--hf {hf_dir}: cannot read {path} ({err})") from err
    return (QWEN25_OMNI if is_qwen_omni_hf(config) else KIMI_AUDIO).name


def run_import_qwen_omni(args: argparse.Namespace) -> None:
    from paras2s_jax.model import count_params
    from paras2s_jax.model.qwen_omni.store import import_hf_dir

    start = time.perf_counter()
    model, kept = import_hf_dir(args.hf, args.out, _mesh(args), args.param_dtype)
    print(f"imported Qwen2.5-Omni: {count_params(model):,} parameters "
          f"({model.config.thinker.param_dtype}) from {args.hf} in "
          f"{time.perf_counter() - start:.1f} s; Orbax checkpoint at {args.out}; kept "
          f"{kept} other tensor(s) and the other files in {Path(args.out) / 'hf_files'}")


def run_export_qwen_omni(args: argparse.Namespace) -> None:
    from paras2s_jax.checkpoint.hf_assets import find_assets
    from paras2s_jax.model.qwen_omni.store import export_hf_dir

    assets = find_assets(args.assets or args.checkpoint)
    if assets is None:
        raise SystemExit(f"{args.assets or args.checkpoint}: no hf_files/ (nor config.json) "
                         "to take the original config, tokenizer and token2wav from")
    weight_map = export_hf_dir(args.checkpoint, args.out, assets, _mesh(args),
                               int(args.max_shard_gb * 1024**3))
    print(f"exported Qwen2.5-Omni: {len(weight_map)} tensors in "
          f"{len(set(weight_map.values()))} shard(s) to {args.out}, with the other files "
          f"of {assets}")


def run_import(args: argparse.Namespace) -> None:
    if _hf_family(args.hf) == "qwen25_omni":
        return run_import_qwen_omni(args)
    from paras2s_jax.checkpoint import import_hf
    from paras2s_jax.checkpoint.hf_assets import ASSETS_DIR, save_assets
    from paras2s_jax.checkpoint.orbax_io import save_model
    from paras2s_jax.model import count_params

    overrides = {"param_dtype": args.param_dtype} if args.param_dtype else {}
    start = time.perf_counter()
    model = import_hf(args.hf, _mesh(args), **overrides)
    loaded = time.perf_counter()
    out = Path(args.out)
    save_model(out, model)
    kept = save_assets(args.hf, out)
    tokenizer = [Path(args.hf) / f for f in TOKENIZER_FILES if (Path(args.hf) / f).exists()]
    if tokenizer:
        (out / TOKENIZER_DIR).mkdir()
        for f in tokenizer:
            shutil.copy(f, out / TOKENIZER_DIR / f.name)
    print(f"imported {count_params(model):,} parameters ({model.config.param_dtype}) from "
          f"{args.hf} in {loaded - start:.1f} s; Orbax checkpoint at {out} "
          f"({time.perf_counter() - loaded:.1f} s); kept {len(kept)} other file(s) "
          f"in {out / ASSETS_DIR}")


def run_export(args: argparse.Namespace) -> None:
    from paras2s_jax.checkpoint import export_hf
    from paras2s_jax.checkpoint.hf_assets import (
        ASSETS_DIR,
        find_assets,
        original_config,
        restore_assets,
    )
    from paras2s_jax.checkpoint.orbax_io import read_model_config, restore_model
    from paras2s_jax.model.families import QWEN25_OMNI, family_of

    if family_of(read_model_config(args.checkpoint)) is QWEN25_OMNI:
        return run_export_qwen_omni(args)
    assets = find_assets(args.assets or args.checkpoint)
    if args.assets and assets is None:
        raise SystemExit(f"--assets {args.assets}: neither an imported checkpoint "
                         f"({ASSETS_DIR}/) nor a HF directory (config.json)")
    model = restore_model(args.checkpoint, _mesh(args))
    weight_map = export_hf(
        model, args.out, max_shard_bytes=int(args.max_shard_gb * 1024**3),
        original_config=original_config(assets) if assets else None,
    )
    kept = restore_assets(assets, args.out) if assets else []
    print(f"exported {len(weight_map)} tensors in {len(set(weight_map.values()))} shard(s) "
          f"to {args.out}" + (f", with {len(kept)} other file(s) from {assets}" if assets else
                              "; no original files to copy (config.json from the model)"))


def run_random(args: argparse.Namespace) -> None:
    if args.family == "qwen25_omni":
        from paras2s_jax.model.qwen_omni.store import preset_config, write_random_qwen_omni

        try:
            config = preset_config(args.preset, args.dtype)
        except KeyError as err:
            raise SystemExit(f"--preset: {err.args[0]}") from err
        weight_map = write_random_qwen_omni(args.out, config, args.seed,
                                            int(args.max_shard_gb * 1024**3))
        print(f"wrote a random Qwen2.5-Omni {args.preset} checkpoint ({len(weight_map)} "
              f"tensors, {len(set(weight_map.values()))} files) to {args.out}")
        return
    from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint
    from paras2s_jax.model import config as presets

    config = getattr(presets, args.preset)()
    weight_map = write_random_checkpoint(
        args.out, config, num_layer_shards=args.shards, seed=args.seed, dtype=args.dtype
    )
    print(f"wrote a random {args.preset} checkpoint ({len(weight_map)} tensors, "
          f"{len(set(weight_map.values()))} files) to {args.out}")


def run_random_speech(args: argparse.Namespace) -> None:
    from paras2s_jax.audio.random_speech import write_random_speech

    dirs = write_random_speech(args.out, args.preset, args.seed)
    for name, directory in dirs.items():
        print(f"wrote a random {args.preset} {name} checkpoint to {directory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="HF safetensors -> Orbax")
    imp.add_argument("--hf", required=True, help="HF checkpoint directory")
    imp.add_argument("--out", required=True, help="Orbax checkpoint directory to create")
    imp.add_argument("--param-dtype", choices=("float32", "bfloat16"),
                     help="dtype parameters are cast to on load (default: the checkpoint's)")
    exp = sub.add_parser("export", help="Orbax -> HF safetensors")
    exp.add_argument("--checkpoint", required=True, help="Orbax model checkpoint directory")
    exp.add_argument("--out", required=True, help="HF directory to write")
    exp.add_argument("--max-shard-gb", type=float, default=5.0, help="shard size cap (GiB)")
    exp.add_argument("--assets", help="where the original config.json, modeling code, "
                     "tokenizer, Whisper, detokenizer and vocoder files come from: an imported "
                     "checkpoint or the HF directory (default: the checkpoint's own "
                     "hf_files/; needed for training checkpoints)")
    for p in (imp, exp):
        p.add_argument("--fsdp", type=int, default=1, help="FSDP axis of the mesh")
        p.add_argument("--tensor", type=int, default=1, help="tensor-parallel axis of the mesh")
    rnd = sub.add_parser("random", help="write a random checkpoint in the real layout")
    rnd.add_argument("--out", required=True)
    rnd.add_argument("--family", default="kimi_audio", choices=("kimi_audio", "qwen25_omni"))
    rnd.add_argument("--preset", default="tiny", choices=("tiny", "kimi_audio_7b",
                                                          "qwen25_omni_3b", "qwen25_omni_7b"))
    rnd.add_argument("--shards", type=int, default=3, help="number of layer shard files")
    rnd.add_argument("--max-shard-gb", type=float, default=5.0,
                     help="shard size cap (GiB), qwen25_omni only")
    rnd.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    rnd.add_argument("--seed", type=int, default=0)
    speech = sub.add_parser("random-speech", help="write random speech checkpoints "
                            "(tokenizer, Whisper encoder, detokenizer, vocoder)")
    speech.add_argument("--out", required=True)
    speech.add_argument("--preset", default="tiny", choices=("tiny", "kimi_audio_7b"))
    speech.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    commands = {"import": run_import, "export": run_export, "random": run_random,
                "random-speech": run_random_speech}
    commands[args.command](args)


if __name__ == "__main__":
    main()
