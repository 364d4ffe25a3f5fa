"""The reward model reads only the reply channels of its view, in training, evaluation and
GRPO scoring; GRPO refuses a reward model recorded with another view."""

import json

import numpy as np
import pytest
from flax import nnx

from configs import grpo as grpo_configs
from configs import reward as reward_configs
from paras2s_jax import layout
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.policy import KimiAudioPolicy
from paras2s_jax.sampling import SampleOutput
from paras2s_jax.train import stages
from paras2s_jax.train.inputs import InputMismatch
from paras2s_jax.train.reward import reward_reply
from paras2s_jax.train.reward_stage import (
    VIEW_FILE,
    evaluate_rm,
    read_view,
    training_batches,
    write_view,
)
from paras2s_jax.train.rollout import judge_replies, score_replies

DIGITS, SUFFIX = [595, 596, 597, 598, 599], [600]
TEXT, OTHER_TEXT = [101, 102, 103, 104], [201, 202, 203, 204]
AUDIO, OTHER_AUDIO = [7, 8, 9, 10, 11, 12], [70, 80, 90, 100, 110, 120]
# Which of (text changed, audio changed) moves the score under each view.
SEES = {"audio": (False, True), "text": (True, False), "both": (True, True)}


@pytest.fixture(scope="module")
def model():
    return KimiAudio(tiny(), rngs=nnx.Rngs(0))


def _sampled(replies, cfg, steps=16) -> SampleOutput:
    """Sampler output whose rows are the reply columns of `replies` ((text, audio) pairs)."""
    cols = [layout.build_reply(t, a, cfg) for t, a in replies]
    pad = lambda x: np.pad(x, (0, steps - len(x)), constant_values=cfg.special.text_blank)  # noqa: E731
    text = np.stack([pad(c.text) for c in cols])
    audio = np.stack([pad(c.audio) for c in cols])
    zeros = np.zeros(text.shape, np.float32)
    blank = cfg.special.text_blank
    return SampleOutput(text, audio, text != blank, audio != blank, zeros, zeros,
                        np.full(len(cols), steps, np.int32), np.ones(len(cols), bool))


def _records(n=6):
    rng = np.random.default_rng(1)
    return [{"prompt_audio": rng.integers(0, 256, 5).tolist(), "reply_text": TEXT,
             "reply_audio": AUDIO, "score": 1 + i % 5} for i in range(n)]


def test_reward_reply_leaves_the_unseen_channel_empty():
    cfg = tiny()
    for view, (text_seen, audio_seen) in SEES.items():
        reply = reward_reply(TEXT, AUDIO, cfg, view)
        assert layout.parse_reply(reply.text, reply.audio, cfg) == (
            TEXT if text_seen else [], AUDIO if audio_seen else [])
    with pytest.raises(ValueError, match="config.reward.view"):
        reward_reply(TEXT, AUDIO, cfg, "speech")


@pytest.mark.parametrize("view", list(SEES))
def test_grpo_score_moves_only_with_the_channels_of_its_view(model, view):
    cfg = model.config
    prompt = layout.record_prompt(_records(1)[0], cfg)
    out = _sampled([(TEXT, AUDIO), (OTHER_TEXT, AUDIO), (TEXT, OTHER_AUDIO)], cfg)
    s = score_replies(model, [prompt], out, 3, SUFFIX, DIGITS, view)
    for changed, seen in zip((s[1], s[2]), SEES[view], strict=True):
        assert (abs(changed - s[0]) > 1e-5) == seen, (view, s)


@pytest.mark.parametrize("view", list(SEES))
def test_evaluate_rm_reads_the_view(model, view):
    cfg = reward_configs.get_config("toy")
    cfg.reward.view, cfg.data.global_batch = view, 8
    base = evaluate_rm(model, _records(), cfg)["mean_predicted"]
    for field, other, seen in (("reply_text", OTHER_TEXT, SEES[view][0]),
                               ("reply_audio", OTHER_AUDIO, SEES[view][1])):
        changed = [{**r, field: other} for r in _records()]
        moved = evaluate_rm(model, changed, cfg)["mean_predicted"]
        assert (abs(moved - base) > 1e-5) == seen, (view, field, base, moved)


@pytest.mark.parametrize("view", list(SEES))
def test_training_batches_hold_only_the_view(view):
    cfg = reward_configs.get_config("toy")
    cfg.reward.view, cfg.data.global_batch = view, 4
    mc = tiny()
    batch = next(training_batches(_records(), mc, cfg))
    codes = set((np.asarray(AUDIO) + mc.audio_token_offset).tolist())
    for row in range(4):
        text_seen = set(TEXT) <= set(batch["text"][row].tolist())
        audio_seen = codes <= set(batch["audio"][row].tolist())
        assert (text_seen, audio_seen) == SEES[view]
    assert not set(TEXT) & set(np.asarray(batch["audio"]).ravel().tolist())


def test_view_file_round_trip_and_refusals(tmp_path):
    write_view(tmp_path, "text")
    assert json.loads((tmp_path / VIEW_FILE).read_text()) == {"view": "text"}
    assert read_view(tmp_path, "text") == "text"
    with pytest.raises(InputMismatch, match=r"config.reward.view='audio' but .*reward_input"
                                            r".json says .* view 'text'"):
        read_view(tmp_path, "audio")
    with pytest.raises(InputMismatch, match="reward_input.json does not exist"):
        read_view(tmp_path / "elsewhere", "audio")


def test_grpo_refuses_a_reward_model_of_another_view(tmp_path):
    rm = tmp_path / "reward_model"
    rm.mkdir()
    write_view(rm, "both")
    cfg = grpo_configs.get_config("toy")
    assert cfg.reward.view == reward_configs.get_config("toy").reward.view == "audio"
    cfg.workdir, cfg.init.source = str(tmp_path / "run"), "fresh"
    cfg.reward.path = str(rm)
    with pytest.raises(InputMismatch) as err:
        stages.get("grpo")(cfg)
    assert str(err.value) == (f"config.reward.view='audio' but {rm / VIEW_FILE} says the "
                              "reward model was trained with view 'both'")


def test_judge_replies_judges_each_row_against_its_own_prompt():
    cfg = tiny()
    replies = [(TEXT, AUDIO), (OTHER_TEXT, AUDIO[:2]), (TEXT, OTHER_AUDIO[:3]), ([], [5])]
    records = [{"id": 10}, {"id": 20}]
    judged = judge_replies(records, KimiAudioPolicy(cfg).replies(_sampled(replies, cfg)), 2,
                           lambda rec, text, audio: (rec["id"] + len(text) + audio[0], ""))
    np.testing.assert_array_equal(judged, [10 + 4 + 7, 10 + 4 + 7, 20 + 4 + 70, 20 + 0 + 5])
