"""Small random Kimi-Audio checkpoints in the published file layout.

Same tensor names, shapes (for the given config), per-layer `rotary_emb.inv_freq`
buffers, index file and irregular shard names as the real checkpoint
(`model-1-of-N.safetensors` ... plus a last `model-{N+1}-of-{N+1}.safetensors` holding
the embedding, final norms and heads), plus `config.json` and tokenizer files
(`tiktoken.model` with BPE ranks trained on a small corpus, `tokenizer_config.json`).
Used by the tests and by anyone without the real weights.
"""

from __future__ import annotations

import base64
import collections
import json
import re
import zlib
from pathlib import Path

import numpy as np
from flax import nnx

from paras2s_jax.checkpoint.hf_io import INDEX_FILE, rope_buffer_keys, rope_inv_freq
from paras2s_jax.checkpoint.hf_keys import key_specs
from paras2s_jax.checkpoint.safetensors_io import write_safetensors
from paras2s_jax.model.config import NUM_SPECIAL_TOKENS, KimiAudioConfig
from paras2s_jax.model.kimi_audio import KimiAudio
from paras2s_jax.tokenizer import special_token_names

_LAST_SHARD_KEYS = (
    "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "mimo_output.weight",
    "model.mimo_norm.weight",
)
_CORPUS = (
    "I just bumped into my ex. Oh great, another meeting. Can I buy a beer? "
    "What should I wear to the party tonight? The weather is lovely today. "
    "That is so nice of you, thank you very much. I am not sure about this. "
) * 4


def train_bpe_ranks(corpus: str, num_ranks: int) -> dict[bytes, int]:
    """Byte-level BPE ranks: the 256 bytes, then the most frequent merges of `corpus`."""
    if num_ranks < 256:
        raise ValueError(f"num_ranks={num_ranks}: need at least the 256 byte tokens")
    ranks = {bytes([b]): b for b in range(256)}
    # Pieces keep their leading space, as the tokenizer's pre-split does.
    pieces = re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+", corpus)
    words = [[bytes([b]) for b in w.encode()] for w in pieces]
    # Once the corpus has no pair left to merge, unused letter pairs fill the table.
    fillers = (bytes([a, b]) for a in range(97, 123) for b in range(97, 123))
    while len(ranks) < num_ranks:
        pairs = collections.Counter(p for w in words for p in zip(w, w[1:], strict=False))
        pairs = collections.Counter({p: c for p, c in pairs.items() if p[0] + p[1] not in ranks})
        if pairs:
            pair = max(pairs, key=lambda p: (pairs[p], p))
            merged = pair[0] + pair[1]
            words = [_merge(w, pair, merged) for w in words]
        else:
            merged = next((t for t in fillers if t not in ranks), None)
            if merged is None:
                raise ValueError(f"num_ranks={num_ranks} is too large for the built-in corpus")
        ranks[merged] = len(ranks)
    return ranks


def _merge(word: list[bytes], pair: tuple[bytes, bytes], merged: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def write_tokenizer(
    directory: Path, text_vocab_size: int, num_base_tokens: int | None = None
) -> None:
    """`tiktoken.model` + `tokenizer_config.json` for a text vocabulary of this size.

    num_base_tokens: BPE ranks before the specials (default: specials at the top).
    """
    num_base = text_vocab_size - NUM_SPECIAL_TOKENS if num_base_tokens is None \
        else num_base_tokens
    ranks = train_bpe_ranks(_CORPUS, num_base)
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in ranks.items()]
    (directory / "tiktoken.model").write_text("\n".join(lines) + "\n")
    added = {
        str(i): {"content": name, "special": True}
        for i, name in special_token_names(num_base).items()
    }
    config = {"tokenizer_class": "TikTokenTokenizer", "added_tokens_decoder": added}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


def write_random_checkpoint(
    directory: str | Path,
    config: KimiAudioConfig,
    num_layer_shards: int = 3,
    seed: int = 0,
    dtype: str = "bfloat16",
    tokenizer: bool = True,
) -> dict[str, str]:
    """Write a random checkpoint of `config` in the real layout; returns the weight map.

    Values are drawn per tensor (seeded by name), so memory stays at one tensor.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = config.replace(param_dtype=dtype)
    abstract = nnx.eval_shape(lambda: KimiAudio(config, rngs=nnx.Rngs(0)))
    specs = key_specs(abstract)
    np_dtype = np.dtype(config.storage_dtype)
    shapes = {k: (s.hf_shape, np_dtype) for k, s in specs.items()}
    shapes.update({k: ((config.head_dim // 2,), np_dtype) for k in rope_buffer_keys(config)})

    layer_keys = [k for k in shapes if k not in _LAST_SHARD_KEYS]
    groups = [list(g) for g in np.array_split(np.asarray(layer_keys, object), num_layer_shards)]
    groups.append([k for k in _LAST_SHARD_KEYS if k in shapes])
    n = num_layer_shards

    def value(key: str) -> np.ndarray:
        if key.endswith("rotary_emb.inv_freq"):
            return rope_inv_freq(config)
        shape = shapes[key][0]
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        if key.endswith("norm.weight") or key.endswith("layers.4.weight"):
            return 1.0 + 0.1 * rng.standard_normal(shape, np.float32)
        return 0.05 * rng.standard_normal(shape, np.float32)

    weight_map: dict[str, str] = {}
    total = 0
    for i, keys in enumerate(groups, start=1):
        # The real checkpoint names its last shard "of N+1" while the others say "of N".
        name = f"model-{i}-of-{n if i <= n else n + 1}.safetensors"
        total += write_safetensors(
            directory / name, ((k, value(k)) for k in keys),
            shapes={k: shapes[k] for k in keys}, metadata={"format": "pt"},
        )
        weight_map.update({k: name for k in keys})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))
    (directory / "config.json").write_text(json.dumps(config.to_hf_config(), indent=2))
    if tokenizer:
        write_tokenizer(directory, config.text_vocab_size, config.special.num_base_tokens)
    return weight_map
