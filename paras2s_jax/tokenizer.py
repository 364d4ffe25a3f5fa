"""The Kimi-Audio text tokenizer: tiktoken BPE ranks + the dual-stream special tokens.

A checkpoint ships `tiktoken.model` (one "base64(token) rank" per line; 151,643 ranks
for Kimi-Audio) and `tokenizer_config.json`, whose `added_tokens_decoder` names every
special id. Special ids follow the base ranks (`[BOS]` = num_base_tokens, ...); the
ones the dual-stream layout uses are cross-checked against `SpecialTokens`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from paras2s_jax.model.config import NUM_SPECIAL_TOKENS, SPECIAL_TOKEN_OFFSETS, SpecialTokens

# Pre-tokenisation split of the Qwen2 BPE family (Kimi-Audio reuses its 151,643 ranks);
# a `pat_str` field in tokenizer_config.json takes precedence.
DEFAULT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Names of the special tokens at their offsets from num_base_tokens; the other slots are
# reserved. The ones `SpecialTokens` uses (except pad) are checked against the file.
SPECIAL_TOKEN_NAMES = {
    0: "[BOS]",
    1: "[EOS]",
    2: "<|im_msg_end|>",
    3: "<|im_user_msg_start|>",
    4: "<|im_assistant_msg_start|>",
    9: "[EOT]",
    18: "<|im_media_begin|>",
    20: "<|im_media_end|>",
    23: "<|im_kimia_text_blank|>",
    24: "<|im_kimia_text_eos|>",
    27: "<|im_kimia_user_msg_start|>",
    28: "<|im_kimia_assistant_msg_start|>",
    32: "<|im_kimia_speech_ct_id|>",
    33: "<|im_kimia_speech_ctd_id|>",
    NUM_SPECIAL_TOKENS - 1: "<|im_pad|>",  # the last slot; its name is not checked
}
_CHECKED = {o for f, o in SPECIAL_TOKEN_OFFSETS.items() if f != "pad"}


class TokenizerError(ValueError):
    """The tokenizer files are missing or inconsistent; the message names the file."""


def special_token_names(num_base_tokens: int) -> dict[int, str]:
    """id -> name of every special token, reserved slots included."""
    names = {}
    for offset in range(NUM_SPECIAL_TOKENS):
        names[num_base_tokens + offset] = SPECIAL_TOKEN_NAMES.get(
            offset, f"<|reserved_token_{offset}|>"
        )
    return names


class KimiTextTokenizer:
    """Encode/decode text and look up the special tokens of a Kimi-Audio checkpoint."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        model_file = directory / "tiktoken.model"
        if not model_file.exists():
            raise TokenizerError(f"{model_file}: tokenizer BPE file not found")
        try:
            ranks = load_tiktoken_bpe(str(model_file))
        except Exception as err:  # tiktoken raises bare ValueErrors/binascii errors
            raise TokenizerError(f"{model_file}: not a tiktoken BPE file ({err})") from err
        self.num_base_tokens = len(ranks)
        config_file = directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        names = special_token_names(self.num_base_tokens)
        for token_id, entry in config.get("added_tokens_decoder", {}).items():
            token_id = int(token_id)
            if token_id not in names:
                raise TokenizerError(
                    f"{config_file}: added token id {token_id} is outside the special range "
                    f"[{self.num_base_tokens}, {self.num_base_tokens + NUM_SPECIAL_TOKENS})"
                )
            name = entry["content"] if isinstance(entry, dict) else str(entry)
            offset = token_id - self.num_base_tokens
            if offset in _CHECKED and SPECIAL_TOKEN_NAMES[offset] != name:
                raise TokenizerError(
                    f"{config_file}: id {token_id} is {name!r}, the dual-stream layout "
                    f"expects {SPECIAL_TOKEN_NAMES[offset]!r} there"
                )
            names[token_id] = name
        self.special_ids = {name: i for i, name in names.items()}
        self.encoding = tiktoken.Encoding(
            name=f"kimia:{directory.name}",
            pat_str=config.get("pat_str", DEFAULT_PATTERN),
            mergeable_ranks=ranks,
            special_tokens=self.special_ids,
        )

    @property
    def vocab_size(self) -> int:
        """Text vocabulary size (base ranks + special tokens)."""
        return self.num_base_tokens + NUM_SPECIAL_TOKENS

    def special_tokens(self) -> SpecialTokens:
        """The dual-stream layout's special ids, read from this tokenizer."""
        return SpecialTokens.at_base(self.num_base_tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (special-token strings are encoded as text)."""
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; special and out-of-vocabulary ids are dropped."""
        return self.encoding.decode([i for i in ids if i < self.num_base_tokens])
