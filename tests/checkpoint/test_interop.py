"""A checkpoint in the published layout, but with a small vocabulary, through import/export.

Special-token ids come from config.json, not from the top of the text vocabulary; the
export writes back every config.json field and the checkpoint's other files, so it
loads in the PyTorch code (through `auto_map`) as the original did.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from paras2s_jax.checkpoint import iter_tensors, read_config
from paras2s_jax.checkpoint.hf_assets import ASSETS_DIR
from paras2s_jax.checkpoint.orbax_io import read_model_config, restore_model, save_model
from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint
from paras2s_jax.model import ConfigError, SpecialTokens, tiny
from paras2s_jax.tokenizer import KimiTextTokenizer

ROOT = Path(__file__).resolve().parents[2]
NUM_BASE = 500  # 603 would put the specials at the top of the 1024-id text vocabulary

# A configuration module like the one the published checkpoint ships (written here).
CONFIG_CODE = '''
from transformers import Qwen2Config


class KimiAudioConfig(Qwen2Config):
    model_type = "moonshot_kimia"

    def __init__(self, num_base_tokens=151643, kimia_media_begin=151661,
                 kimia_media_end=151663, kimia_audio_output_vocab=16896, **kwargs):
        self.num_base_tokens = num_base_tokens
        self.kimia_media_begin = kimia_media_begin
        self.kimia_media_end = kimia_media_end
        self.kimia_audio_output_vocab = kimia_audio_output_vocab
        super().__init__(**kwargs)
'''


def _convert(*argv: str) -> None:
    spec = importlib.util.spec_from_file_location("convert_cli", ROOT / "launch" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = sys.argv
    sys.argv = ["convert.py", *argv]
    try:
        module.main()
    finally:
        sys.argv = old


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Random weights in the published layout with its other files and config fields."""
    directory = tmp_path_factory.mktemp("published")
    config = tiny(special=SpecialTokens.at_base(NUM_BASE))
    write_random_checkpoint(directory, config, num_layer_shards=2, seed=3)
    raw = json.loads((directory / "config.json").read_text())
    raw.update(bos_token_id=NUM_BASE, eos_token_id=NUM_BASE + 1, whisper_model_name="w-l-v3",
               kimia_audio_output_vocab=768)
    (directory / "config.json").write_text(json.dumps(raw, indent=2))
    (directory / "configuration_moonshot_kimia.py").write_text(CONFIG_CODE)
    (directory / "modeling_moonshot_kimia.py").write_text("# modeling code\n")
    (directory / "generation_config.json").write_text('{"max_length": 512}')
    for sub, name, data in (("whisper-large-v3", "model.safetensors", b"w" * 64),
                            ("audio_detokenizer", "config.yaml", b"dit: {depth: 2}\n"),
                            ("vocoder", "config.json", b'{"num_mels": 80}')):
        (directory / sub).mkdir()
        (directory / sub / name).write_bytes(data)
    return directory


def _files(directory: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every non-weight file (weights compared by tensor)."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
        if p.is_file() and not (p.parent == directory and ".safetensors" in p.name)
    }


def test_special_tokens_come_from_config_json(published):
    special = read_config(published).special
    assert special == SpecialTokens.at_base(NUM_BASE)
    assert (special.media_begin, special.text_blank, special.pad) == (518, 523, 920)
    assert special != tiny().special  # the top-of-vocabulary placement (603 + offsets)
    assert KimiTextTokenizer(published).special_tokens() == special


def test_explicit_media_ids_win_and_bad_ids_are_named(tmp_path):
    base = tiny().to_hf_config()
    del base["num_base_tokens"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, "kimia_media_begin": 700, "kimia_media_end": 702}))
    special = read_config(tmp_path).special
    assert (special.media_begin, special.media_end) == (700, 702)
    assert special.text_blank == tiny().special.text_blank  # the rest: top of the vocabulary
    path.write_text(json.dumps({**base, "num_base_tokens": 700}))
    with pytest.raises(ConfigError, match="config.json: num_base_tokens=700"):
        read_config(tmp_path)
    path.write_text(json.dumps({**base, "kimia_media_end": 5000}))
    with pytest.raises(ConfigError, match="config.json: kimia_media_end=5000 is outside"):
        read_config(tmp_path)


def test_random_config_has_the_published_fields():
    config = tiny().to_hf_config()
    assert config["num_base_tokens"] == 1024 - 421
    assert config["kimia_audio_output_vocab"] == 256 + 512
    assert config["auto_map"]["AutoModelForCausalLM"].startswith("modeling_moonshot_kimia.")
    assert config["kimia_media_begin"] == tiny().special.media_begin


def test_import_export_keeps_every_field_and_file(published, tmp_path, monkeypatch):
    orbax, back = tmp_path / "orbax", tmp_path / "back"
    _convert("import", "--hf", str(published), "--out", str(orbax))
    assert (orbax / ASSETS_DIR / "whisper-large-v3" / "model.safetensors").exists()
    assert read_model_config(orbax).special == SpecialTokens.at_base(NUM_BASE)
    _convert("export", "--checkpoint", str(orbax), "--out", str(back))
    assert _files(back) == _files(published)  # config.json byte for byte, code, audio dirs
    original = {k: np.array(v) for k, v in iter_tensors(published)}
    exported = {k: np.array(v) for k, v in iter_tensors(back)}
    assert original.keys() == exported.keys()
    assert all(original[k].tobytes() == exported[k].tobytes() for k in original)

    # The PyTorch side reads the export through auto_map, as it read the original.
    import transformers
    from transformers import dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    loaded = transformers.AutoConfig.from_pretrained(back, trust_remote_code=True)
    assert type(loaded).__name__ == "KimiAudioConfig"
    assert (loaded.num_base_tokens, loaded.kimia_media_begin) == (NUM_BASE, NUM_BASE + 18)
    assert loaded.kimia_audio_output_vocab == 768


def test_trained_checkpoint_exports_with_the_imported_files(published, tmp_path):
    orbax, trained, back = tmp_path / "orbax", tmp_path / "trained", tmp_path / "back"
    _convert("import", "--hf", str(published), "--out", str(orbax))
    save_model(trained, restore_model(orbax))  # a checkpoint without hf_files/
    _convert("export", "--checkpoint", str(trained), "--out", str(tmp_path / "bare"))
    bare = json.loads((tmp_path / "bare" / "config.json").read_text())
    assert "whisper_model_name" not in bare and bare["num_base_tokens"] == NUM_BASE
    _convert("export", "--checkpoint", str(trained), "--assets", str(orbax), "--out", str(back))
    assert _files(back) == _files(published)
