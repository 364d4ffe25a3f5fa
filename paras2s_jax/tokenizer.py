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

from paras2s_jax.model.config import SpecialTokens

# Pre-tokenisation split of the Qwen2 BPE family (Kimi-Audio reuses its 151,643 ranks);
# a `pat_str` field in tokenizer_config.json takes precedence.
DEFAULT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_SPECIAL_TOKENS = 421  # 293 + 128 reserved slots after the base ranks

# Offsets (from num_base_tokens) of the named special tokens, and the field of
# `SpecialTokens` each one fills.
NAMED_SPECIALS = {
    0: ("[BOS]", None),
    1: ("[EOS]", None),
    2: ("<|im_msg_end|>", "msg_end"),
    3: ("<|im_user_msg_start|>", None),
    4: ("<|im_assistant_msg_start|>", None),
    9: ("[EOT]", None),
    18: ("<|im_media_begin|>", "media_begin"),
    20: ("<|im_media_end|>", "media_end"),
    23: ("<|im_kimia_text_blank|>", "text_blank"),
    24: ("<|im_kimia_text_eos|>", "text_eos"),
    27: ("<|im_kimia_user_msg_start|>", "user_msg_start"),
    28: ("<|im_kimia_assistant_msg_start|>", "assistant_msg_start"),
    32: ("<|im_kimia_speech_ct_id|>", "speech_ct"),
    33: ("<|im_kimia_speech_ctd_id|>", "speech_ctd"),
    NUM_SPECIAL_TOKENS - 1: ("<|im_pad|>", "pad"),  # the last slot; its name is not checked
}


class TokenizerError(ValueError):
    """The tokenizer files are missing or inconsistent; the message names the file."""


def special_token_names(num_base_tokens: int) -> dict[int, str]:
    """id -> name of every special token, reserved slots included."""
    names = {}
    for offset in range(NUM_SPECIAL_TOKENS):
        name = NAMED_SPECIALS.get(offset, (f"<|reserved_token_{offset}|>", None))[0]
        names[num_base_tokens + offset] = name
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
            expected = NAMED_SPECIALS.get(token_id - self.num_base_tokens)
            if expected and expected[1] not in (None, "pad") and expected[0] != name:
                raise TokenizerError(
                    f"{config_file}: id {token_id} is {name!r}, the dual-stream layout "
                    f"expects {expected[0]!r} there"
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
        return SpecialTokens(**{
            field: self.num_base_tokens + offset
            for offset, (_, field) in NAMED_SPECIALS.items() if field is not None
        })

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (special-token strings are encoded as text)."""
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; special and out-of-vocabulary ids are dropped."""
        return self.encoding.decode([i for i in ids if i < self.num_base_tokens])
