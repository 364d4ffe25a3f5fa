"""ParaS2SBench: score speech-to-speech systems on paralinguistic fitness.

    python -m bench.score              # offline default: bundled espeak-ng set, no keys
    python -m bench.report A.jsonl B.jsonl --paper --out DIR
    python -m bench.agreement --human ratings.csv A.jsonl
    python -m bench.make_offline_set --out DIR
    python -m bench.calibrate_style [--check]

Modules import lazily on purpose: `python -m bench.speed` must not pay for the
speech back ends.
"""
