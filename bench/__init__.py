"""ParaS2SBench: score speech-to-speech systems on paralinguistic fitness.

    python -m bench.score              # offline default: bundled espeak-ng set, no keys
    python -m bench.report A.jsonl B.jsonl --paper --out DIR
    python -m bench.agreement --human ratings.csv A.jsonl
    python -m bench.data.make_offline_set --out DIR
    python -m bench.calibrate_style    # per-voice accuracy of the speaker-relative bands
    python -m bench.voicebench --root DIR   # general ability on VoiceBench's subsets
    python -m bench.voicebench parity       # its scorers vs VoiceBench's own verdicts
    python -m bench.generate | bench.synth | bench.importers   # making a set (bench/DATA.md)

The top level holds the commands; the code below them, in the order data flows:
bench.data (queries, records in bench.data.schema, speech, corpora, loaders, export)
-> bench.backends (ASR, style, judge, TTS, the systems under test) -> bench.scoring (the
flags and one item end to end, run fingerprints, speaker registers, VoiceBench's rules,
the judge reward-model distillation uses) -> the commands' outputs (judgements.jsonl,
reports).

Modules import lazily on purpose: a command pays only for the back ends it uses.
"""
