"""espeak-ng voice mapping (the thresholds fitted on espeak-ng: test_style_analyser.py)."""

from __future__ import annotations

from bench.backends.tts import EspeakVoice, voice_for


def test_instruction_keywords_map_to_espeak_settings():
    assert voice_for("a sad woman").voice == "en-us+f3"
    assert voice_for("an angry male voice").voice == "en-us+m3"  # "male" is not in "female"
    assert voice_for("bold and old").voice == "en-us+m7"  # "old" as a word only
    sad, happy = voice_for("sad"), voice_for("excited")
    assert sad.rate < happy.rate and sad.pitch < happy.pitch and sad.amplitude < happy.amplitude
    assert voice_for("") == EspeakVoice()
