"""The offline analyser separates the styles it claims, on held-out espeak-ng audio."""

from __future__ import annotations

import shutil

import pytest

from bench import calibrate_style
from bench.backends.style import caption_prosody
from bench.calibrate_style import HELD_OUT_SENTENCES, render_set

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def held_out_rows():
    # Sentences never used to fit the thresholds; both voices, all three levels.
    return render_set(HELD_OUT_SENTENCES[:2])


def test_high_low_pitch_fast_slow_loud_soft_are_separated(held_out_rows):
    acc = calibrate_style.accuracy(held_out_rows)
    print("\noffline analyser accuracy on held-out espeak-ng audio:")
    for attr, v in acc.items():
        print(f"  {attr}: {v}")
    for attr in ("pitch", "speed", "volume"):
        assert acc[attr]["n"] == 2 * 2 * 3
        assert acc[attr]["extremes"] >= 0.85, (attr, acc[attr])  # high/low, fast/slow, loud/soft
        assert acc[attr]["three_level"] >= 0.7, (attr, acc[attr])
    assert acc["gender"]["accuracy"] >= 0.85


def test_extremes_move_the_caption_the_right_way(held_out_rows):
    by = {(a, lv, r): caption_prosody(p) for a, lv, r, p in held_out_rows}
    for reg in ("male", "female"):
        lo, hi = by[("pitch", "low", reg)], by[("pitch", "high", reg)]
        assert lo.features["f0_median_hz"] < hi.features["f0_median_hz"]
        slow, fast = by[("speed", "slow", reg)], by[("speed", "fast", reg)]
        assert slow.features["syllable_rate"] < fast.features["syllable_rate"]
        soft, loud = by[("volume", "soft", reg)], by[("volume", "loud", reg)]
        assert soft.features["level_dbfs"] < loud.features["level_dbfs"] - 6
        assert "Speed:" in slow.caption and "Volume:" in soft.caption and "Pitch:" in lo.caption
        assert "Emotion/tone" in loud.caption and "offline prosody analyser" in loud.caption
