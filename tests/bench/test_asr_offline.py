"""pocketsphinx transcripts must not depend on what was decoded before."""

from __future__ import annotations

from bench.backends.asr import PocketSphinxASR
from bench.backends.cache import Cache
from bench.backends.runtime import Runtime
from bench.scoring.options import OFFLINE_DIR


def test_pocketsphinx_is_order_independent(tmp_path):
    files = sorted(str(p) for p in (OFFLINE_DIR / "replies" / "style_aware").rglob("*.flac"))[:3]
    results = []
    for i, order in enumerate((files, files[::-1])):
        runtime = Runtime(Cache(tmp_path / f"c{i}.sqlite"))  # fresh caches: really decode
        asr = PocketSphinxASR(runtime)
        results.append({f: asr.transcribe(f) for f in order})
        runtime.close()
    assert results[0] == results[1]
    assert sum(bool(t) for t in results[0].values()) >= 2  # it does recognise words
