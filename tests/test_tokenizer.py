"""The text tokenizer in the Kimi-Audio file format."""

import json

import pytest

from paras2s_jax.checkpoint.random_checkpoint import write_tokenizer
from paras2s_jax.model import kimi_audio_7b, tiny
from paras2s_jax.tokenizer import KimiTextTokenizer, TokenizerError, special_token_names


@pytest.fixture
def tok_dir(tmp_path):
    write_tokenizer(tmp_path, tiny().text_vocab_size)
    return tmp_path


def test_special_ids_follow_the_kimi_layout(tok_dir):
    tok = KimiTextTokenizer(tok_dir)
    assert tok.vocab_size == tiny().text_vocab_size
    assert tok.special_tokens() == tiny().special
    # With Kimi-Audio's 151,643 base ranks the same offsets give the published ids.
    names = special_token_names(151643)
    sp = kimi_audio_7b().special
    assert names[sp.text_blank] == "<|im_kimia_text_blank|>"
    assert names[sp.speech_ctd] == "<|im_kimia_speech_ctd_id|>"
    assert names[sp.media_end] == "<|im_media_end|>"


def test_encode_decode_round_trip(tok_dir):
    tok = KimiTextTokenizer(tok_dir)
    text = "I just bumped into my ex. Can I buy a beer?"
    ids = tok.encode(text)
    assert len(ids) < len(text) / 2  # learned merges are used
    assert all(i < tok.num_base_tokens for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.special_tokens().text_eos]) == text
    # Special-token strings in user text stay text.
    assert all(i < tok.num_base_tokens for i in tok.encode("<|im_kimia_text_eos|>"))


def test_bad_tokenizer_files_are_named(tok_dir, tmp_path):
    with pytest.raises(TokenizerError, match="tiktoken.model: tokenizer BPE file not found"):
        KimiTextTokenizer(tmp_path / "nowhere")
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    blank = str(tiny().special.text_blank)
    config["added_tokens_decoder"][blank]["content"] = "<|something_else|>"
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match="tokenizer_config.json: id .* expects"):
        KimiTextTokenizer(tok_dir)
    other = tmp_path / "other"
    other.mkdir()
    (other / "tiktoken.model").write_text("not base64 at all\n")
    with pytest.raises(TokenizerError, match="not a tiktoken BPE file"):
        KimiTextTokenizer(other)
