"""ParaS2SBench: score speech-to-speech systems on paralinguistic fitness.

    python -m bench.score              # offline default: bundled espeak-ng set, no keys
    python -m bench.report A.jsonl B.jsonl --paper --out DIR
    python -m bench.agreement --human ratings.csv A.jsonl
    python -m bench.data.make_offline_set --out DIR
    python -m bench.calibrate_style    # per-voice accuracy of the speaker-relative bands
    python -m bench.generate | bench.synth | bench.importers   # making a set (bench/DATA.md)

Layout, in the order data flows: bench.data (queries, speech, corpora, loaders, export)
-> bench.backends (ASR, style, judge, TTS, the systems under test) -> bench.score
(judgements.jsonl) -> bench.report / bench.agreement. bench.schema holds the record types;
bench.fingerprint what shaped a run's scores; bench.registers each speaker's usual voice.

Modules import lazily on purpose: a command pays only for the back ends it uses.
"""
