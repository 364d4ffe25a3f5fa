"""The dual-stream layout: prompt, reply columns and their round trip."""

import numpy as np
import pytest

from paras2s_jax.layout import Message, build_prompt, build_reply, concat, left_pad, parse_reply
from paras2s_jax.model import kimi_audio_7b, tiny


def test_prompt_matches_the_published_example():
    # Kimi-Audio's inference code (github.com/MoonshotAI/Kimi-Audio) lays out a text
    # instruction then user audio, text output, as follows.
    cfg = kimi_audio_7b()
    msgs = [Message("user", text=(11, 12)), Message("user", audio=(5, 6, 7))]
    p = build_prompt(msgs, cfg, output_type="text")
    b = 151666
    assert p.audio.tolist() == [151670, b, b, 151661, 152069, 152070, 152071, 151663,
                                151675, 151645, 151671]
    assert p.text.tolist() == [b, 11, 12] + [b] * 8
    assert p.continuous.tolist() == [False] * 4 + [True] * 3 + [False] * 4
    assert build_prompt(msgs, cfg).audio[8] == 151676  # "both" asks for speech output


def test_reply_columns_delay_audio_and_mark_chosen_tokens():
    cfg = tiny()
    sp = cfg.special
    r = build_reply([1, 2, 3], list(range(10)), cfg)
    d = cfg.audio_delay
    assert len(r) == d + 10 + 1
    assert r.text[:4].tolist() == [1, 2, 3, sp.text_eos]
    assert set(r.text[4:].tolist()) == {sp.text_blank}
    assert r.audio[:d].tolist() == [sp.text_blank] * d
    assert r.audio[d : d + 10].tolist() == [c + cfg.audio_token_offset for c in range(10)]
    assert r.audio[-1] == sp.msg_end
    assert r.text_mask.sum() == 4 and r.audio_mask.sum() == 11
    assert not r.audio_mask[:d].any()
    assert parse_reply(r.text, r.audio, cfg) == ([1, 2, 3], list(range(10)))


def test_long_text_pushes_the_audio_end_token():
    cfg = tiny()
    r = build_reply(list(range(20, 40)), [1, 2], cfg)
    assert r.audio[-1] == cfg.special.msg_end and len(r) == 22
    assert parse_reply(r.text, r.audio, cfg) == (list(range(20, 40)), [1, 2])


def test_left_pad_and_errors():
    cfg = tiny()
    p = build_prompt([Message("user", audio=(1, 2))], cfg)
    full = concat(p, build_reply([3], [4], cfg))
    batch = left_pad([p, full], len(full), cfg.special.pad)
    assert batch["attention_mask"][0].sum() == len(p)
    assert not batch["attention_mask"][0, : len(full) - len(p)].any()
    np.testing.assert_array_equal(batch["audio"][1], full.audio)
    with pytest.raises(ValueError, match="more than the length"):
        left_pad([full], 3, cfg.special.pad)
    with pytest.raises(ValueError, match="outside the codebook"):
        build_prompt([Message("user", audio=(cfg.audio_codebook_size,))], cfg)
