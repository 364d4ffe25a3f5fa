"""VoiceBench on our runner, scored as VoiceBench's own evaluators score it.

    python -m bench.voicebench --root /data/voicebench --subsets openbookqa,ifeval,advbench \
        --system checkpoint --system-path ckpt --system-speech speech [bench.score flags]
    python -m bench.voicebench parity [--file FILE ...]   # our scorers vs the official verdicts

Reads a local copy of VoiceBench's data (`bench/data/voicebench_set.py`), sends each spoken
prompt to the system (the same `--system ...` flags as `bench.score`), reads the reply
(the system's own text if it gives one, else ASR of the reply speech, `--asr ...`) and
scores it with that subset's official rule (`bench/scoring/voicebench_rules/`):

| subset | scorer | metric (0-100 for the Overall) |
|---|---|---|
| alpacaeval(_full), commoneval, wildvoice | LLM judge, 1-5, mean of 3 samples | mean (x 20) |
| sd-qa | LLM judge, majority of 3 "Yes"/"No" | % correct |
| openbookqa, mmsu | VoiceBench's answer templates; no letter: seeded guess | % correct |
| ifeval | IFEval's instruction checks, strict and loose | mean of 4 accuracies |
| bbh | VoiceBench's answer phrases per task; none: seeded guess | % correct |
| advbench | VoiceBench's refusal phrases (an empty reply refuses) | % refused |

Overall = the mean of the nine leaderboard subsets (alpacaeval_full, commoneval, wildvoice,
sd-qa, mmsu, openbookqa, bbh, ifeval, advbench), as VoiceBench's leaderboard.
LLM-judged subsets need `--grader openai`: `--grader-setup official` (default) asks as
VoiceBench's judge script (gpt-4o-mini unless `--judge-model` is given), `ours` with a
terser greedy rubric; `--judge-base-url`/`--judge-key-env` pick the endpoint and every call
is cached like the bench does; without a grader they are skipped and say so. Results:
<out>/voicebench.jsonl (per item, resumable) and <out>/voicebench.json (per subset), which
`python -m bench.report ... --voicebench <out>/voicebench.json` puts beside the
ParaS2SBench table. An item that cannot be scored (e.g. an IFEval instruction the checks
do not know) is an error on that item, counted per subset and retried on the next run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.data.schema import Query, StyleVariant
from bench.data.voicebench_set import SCORERS, Item, read_subset
from bench.scoring import options
from bench.scoring.voicebench_rules import (
    SETUPS,
    LLMGrader,
    markdown,
    score_item,
    summarise,
)


def run(items: list[Item], system, asr, grader: LLMGrader | None, out: Path,
        concurrency: int = 4, pedant=None) -> list[dict]:
    """Score every item (resuming <out>/voicebench.jsonl); returns all records."""
    from bench.data.schema import JsonlAppender

    out.mkdir(parents=True, exist_ok=True)
    path = out / "voicebench.jsonl"
    done = {}
    if path.exists():
        done = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())
                if r.get("error") is None}
    todo = [i for i in items if i.id not in done and (grader or SCORERS[i.subset]
                                                      not in ("open", "qa"))]
    prompts = out / "prompts"
    prompts.mkdir(exist_ok=True)

    def one(item: Item) -> dict:
        rec = {"id": item.id, "subset": item.subset, "split": item.split,
               "prompt": item.prompt, "system": system.name}
        try:
            wav = prompts / f"{item.id}.wav"
            if not wav.exists():
                wav.write_bytes(item.audio)
            query = Query(item.id, f"voicebench/{item.subset}", item.prompt, "", "voicebench",
                          (StyleVariant("speech", str(wav)),))
            reply = system.respond(query, query.styles[0])
            rec["response"] = reply.text if reply.text else asr.transcribe(reply.audio)
            rec.update(score_item(item, rec["response"], grader, pedant))
            rec["error"] = None
        except Exception as err:  # one item's failure must not end the run
            rec.update(score=None, error=f"{type(err).__name__}: {err}"[:500])
        return rec

    writer = JsonlAppender(path)
    try:
        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            for rec in pool.map(one, todo):
                writer.append(rec)
                done[rec["id"]] = rec
    finally:
        writer.close()
    return [done[i.id] for i in items if i.id in done]


def parity_main(argv: list[str]) -> int:
    """`parity`: our scorers vs the official evaluators' verdicts; 1 when any differ."""
    from bench.scoring.voicebench_rules import parity

    ap = argparse.ArgumentParser(prog="python -m bench.voicebench parity",
                                 description=parity_main.__doc__)
    ap.add_argument("--file", type=Path, action="append", default=None,
                    help="parity JSONL (or an ifeval parity .json), repeatable (default: "
                         f"{', '.join(f.name for f in parity.DEFAULT_FILES)} in tests/bench/data)")
    args = ap.parse_args(argv)
    try:
        rows = [r for f in (args.file or parity.DEFAULT_FILES) for r in parity.read_rows(f)]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table, differ = parity.compare(rows)
    print(parity.markdown(table))
    for row in differ:
        print(f"differs: {row['id']} {row['reply'][:60]!r} official={row['official']} "
              f"ours={row['ours']}")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    from bench.backends.cache import Cache
    from bench.backends.remote import ConfigError, RateLimiter, RetryPolicy
    from bench.backends.runtime import Runtime

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["parity"]:
        return parity_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m bench.voicebench",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="local copy of hlt-lab/voicebench")
    ap.add_argument("--subsets", default="openbookqa,ifeval,advbench", help="comma list")
    ap.add_argument("--split", default=None, help="one split (default: all present)")
    ap.add_argument("--limit", type=int, default=None, help="first N items per subset")
    ap.add_argument("--grader", default="none", choices=["none", "openai"])
    ap.add_argument("--grader-setup", default="official", choices=sorted(SETUPS),
                    help="official: VoiceBench's judge set-up; ours: one greedy sample")
    ap.add_argument("--pedant-model", type=Path, default=None,
                    help="sd-qa: also PEDANT's score, from a folder with qa-metrics's "
                         "lr_classifier.pkl and tf-idf_vectorizer.pkl")
    ours, rest = ap.parse_known_args(argv)
    args = options.parse_args(rest, prog="python -m bench.voicebench")
    try:
        if args.batch:
            raise ConfigError("--batch is bench.score's: bench.voicebench grades online")
        subsets = [s.strip() for s in ours.subsets.split(",") if s.strip()]
        items = [i for s in subsets for i in read_subset(ours.root, s, ours.split)[:ours.limit]]
        runtime = Runtime(Cache(args.cache), retry=RetryPolicy(args.max_attempts, args.backoff),
                          limiter=RateLimiter(args.max_rps))
        system, asr, _, _ = options.build_backends(args, runtime)
        grader = None
        if ours.grader == "openai":
            setup = SETUPS[ours.grader_setup]
            endpoint = options.endpoint(args, "judge")
            if not any(a.split("=")[0] == "--judge-model" for a in rest):
                endpoint = dataclasses.replace(endpoint, model=setup.default_model)
            grader = LLMGrader(endpoint, runtime, setup)
        pedant = None
        if ours.pedant_model is not None:
            from bench.scoring.voicebench_rules.pedant import PedantScorer

            pedant = PedantScorer(ours.pedant_model)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path("runs/voicebench") / options.slug(system.name)
    records = run(items, system, asr, grader, out, args.concurrency, pedant)
    summary = summarise(records, subsets, grader is not None)
    (out / "voicebench.json").write_text(json.dumps({system.name: summary}, indent=2) + "\n")
    print(markdown({system.name: summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
