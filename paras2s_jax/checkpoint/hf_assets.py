"""The files of a HF checkpoint besides its weights, carried through import and export.

A Kimi-Audio directory holds more than safetensors: `config.json` (with fields such as
`auto_map` that only the PyTorch code reads), the modeling code (`*.py`), tokenizer
files, `whisper-large-v3/`, the detokenizer and the vocoder. Import keeps them in the
Orbax checkpoint (`DIR/hf_files/`, hard-linked when on the same file system, so the
multi-GB audio models cost no space), and export puts them back next to the new
weights, so the export loads in the PyTorch code as the original did.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

ASSETS_DIR = "hf_files"
CONFIG_FILE = "config.json"


def asset_entries(hf_dir: str | Path) -> list[Path]:
    """Top-level files and folders of `hf_dir` other than its weights (sorted).

    Weights are the top-level `*.safetensors` files and their index; hidden entries
    (download caches) are skipped. Sub-folders are kept whole, weights included
    (e.g. `whisper-large-v3/model.safetensors`).
    """
    entries = []
    for entry in sorted(Path(hf_dir).iterdir()):
        weights = entry.is_file() and (
            entry.name.endswith(".safetensors") or entry.name.endswith(".safetensors.index.json")
        )
        if not weights and not entry.name.startswith("."):
            entries.append(entry)
    return entries


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)
    return dst


def copy_entries(entries: list[Path], target: str | Path) -> None:
    """Hard-link (or copy) files and folder trees into `target`."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, copy_function=_link_or_copy,
                            dirs_exist_ok=True)
        else:
            _link_or_copy(str(entry), str(target / entry.name))


def save_assets(hf_dir: str | Path, checkpoint_dir: str | Path) -> list[str]:
    """Keep the non-weight files of `hf_dir` in `checkpoint_dir/hf_files/`; returns their names."""
    entries = asset_entries(hf_dir)
    copy_entries(entries, Path(checkpoint_dir) / ASSETS_DIR)
    return [e.name for e in entries]


def find_assets(directory: str | Path) -> Path | None:
    """The assets folder of an imported Orbax checkpoint or a HF directory, if any."""
    directory = Path(directory)
    if (directory / ASSETS_DIR).is_dir():
        return directory / ASSETS_DIR
    if (directory / CONFIG_FILE).is_file():
        return directory
    return None


def original_config(assets: str | Path) -> dict[str, Any]:
    """The original `config.json` kept with the assets."""
    path = Path(assets) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise OSError(f"{path}: cannot read the original model config ({err})") from err


def restore_assets(assets: str | Path, hf_out: str | Path) -> list[str]:
    """Put the kept files (all but `config.json`, which export rewrites) into `hf_out`."""
    entries = [e for e in asset_entries(assets) if e.name != CONFIG_FILE]
    copy_entries(entries, hf_out)
    return [e.name for e in entries]
