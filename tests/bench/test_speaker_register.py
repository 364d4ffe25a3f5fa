"""Pitch is judged against the speaker's own register, not one gender cut; speed comes from
the transcript."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from bench import calibrate_style
from bench.backends.cache import Cache
from bench.backends.runtime import Runtime
from bench.backends.style import ProsodyCaptioner, caption_prosody, register_of
from bench.backends.tts import EspeakTTS, EspeakVoice
from bench.data.schema import read_queries
from bench.scoring.registers import build_registers

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
SENTENCE = calibrate_style.HELD_OUT_SENTENCES[0]
# One speaker's clips across styles, as a data set holds them: pitch and rate varied.
SETTINGS = {"low": {"pitch": 25}, "normal": {}, "high": {"pitch": 85},
            "slow": {"rate": 120}, "fast": {"rate": 230}}


def _render(voice: str, tmp_path) -> dict[str, str]:
    tts, paths = EspeakTTS(), {}
    for name, change in SETTINGS.items():
        path = tmp_path / voice / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tts.render(SENTENCE, replace(EspeakVoice(voice=voice, rate=175),
                                                      **change)))
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    # en-us+steph is a female voice left out of the calibration: at a low setting her median
    # F0 (~140 Hz) lies inside the male range; en-us+m3 raised sits at ~150 Hz.
    tmp = tmp_path_factory.mktemp("voices")
    return {v: _render(v, tmp) for v in ("en-us+steph", "en-us+m3")}


def test_low_female_and_high_male_voices_are_captioned_for_their_own_register(voices, tmp_path):
    captioner = ProsodyCaptioner(Runtime(Cache(tmp_path / "c.sqlite")))
    for voice, gender in (("en-us+steph", "female"), ("en-us+m3", "male")):
        measured = {k: captioner.measure(p) for k, p in voices[voice].items()}
        reg = register_of(list(measured.values()))
        assert reg is not None and reg.n_clips == len(SETTINGS)
        for level in ("low", "normal", "high"):
            cap = captioner.describe(voices[voice][level], reg, SENTENCE)
            assert (cap.gender, cap.pitch) == (gender, level), (voice, level, cap.caption)
            assert "for this speaker" in cap.caption
        for level in ("slow", "normal", "fast"):
            cap = captioner.describe(voices[voice][level], reg, SENTENCE)
            assert cap.speed == level, (voice, level, cap.caption)
            assert captioner.describe(voices[voice][level], reg).speed == "unknown"
    # The case a single gender cut gets wrong: her low clip alone lies in the male range,
    # and without her register the caption says so rather than "male, high".
    low = captioner.measure(voices["en-us+steph"]["low"])
    assert 125 < low.f0_median_hz < 157
    alone = caption_prosody(low, transcript=SENTENCE)
    assert (alone.gender, alone.pitch) == ("unknown", "unknown"), alone.caption


def test_the_scorer_builds_registers_per_prompt_speaker(voices, tmp_path):
    records = []
    for i, name in enumerate(["low", "normal", "high", "slow", "fast"]):
        other = ["normal", "low", "slow", "high", "normal"][i]
        records.append({"id": f"q{i}", "dimension": "emotion", "text": SENTENCE,
                        "scenario": "s", "split": "synthetic", "styles": [
                            {"name": "a", "audio": voices["en-us+steph"][name], "speaker": "steph"},
                            {"name": "b", "audio": voices["en-us+steph"][other],
                             "speaker": "steph" if i < 4 else "someone-else"}]})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    captioner = ProsodyCaptioner(Runtime(Cache(tmp_path / "c.sqlite")))
    regs = build_registers(read_queries(tmp_path / "q.jsonl"), object(), captioner)
    assert set(regs.prompt) == {"steph"}  # one clip of "someone-else" is too few for a register
    assert regs.prompt["steph"].n_clips == 9 and regs.reply is None
    assert 160 < regs.prompt["steph"].f0_hz < 220
