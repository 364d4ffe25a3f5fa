"""espeak-ng voice mapping, and the analyser thresholds match a fresh calibration."""

from __future__ import annotations

import shutil

import pytest

from bench import calibrate_style
from bench.backends.style import THRESHOLDS
from bench.backends.tts import EspeakVoice, voice_for


def test_instruction_keywords_map_to_espeak_settings():
    assert voice_for("a sad woman").voice == "en-us+f3"
    assert voice_for("an angry male voice").voice == "en-us+m3"  # "male" is not in "female"
    assert voice_for("bold and old").voice == "en-us+m7"  # "old" as a word only
    sad, happy = voice_for("sad"), voice_for("excited")
    assert sad.rate < happy.rate and sad.pitch < happy.pitch and sad.amplitude < happy.amplitude
    assert voice_for("") == EspeakVoice()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_thresholds_in_style_py_are_what_the_calibration_script_fits():
    fitted = calibrate_style.fit(calibrate_style.render_set(calibrate_style.CALIBRATION_SENTENCES))
    for key in ("speed", "volume"):
        assert fitted[key] == pytest.approx(THRESHOLDS[key], rel=0.02), key
    for reg in ("male", "female"):
        assert fitted["pitch"][reg] == pytest.approx(THRESHOLDS["pitch"][reg], rel=0.02)
    assert fitted["gender_f0_hz"] == pytest.approx(THRESHOLDS["gender_f0_hz"], rel=0.02)
