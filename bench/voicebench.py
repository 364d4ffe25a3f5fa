"""VoiceBench on our runner: the general ability of any system the bench knows.

    python -m bench.voicebench --root /data/voicebench --subsets openbookqa,ifeval,advbench \
        --system checkpoint --system-path ckpt --system-speech speech [bench.score flags]

Reads a local copy of VoiceBench's data (`bench/data/voicebench_set.py`), sends each spoken
prompt to the system (the same `--system ...` flags as `bench.score`), reads the reply
(the system's own text if it gives one, else ASR of the reply speech, `--asr ...`) and
scores it the way VoiceBench scores that subset:

| subset | scorer | metric (0-100 "normalised" for the overall mean) |
|---|---|---|
| alpacaeval(_full), commoneval, wildvoice | LLM judge, 1-5 usefulness | mean (x 20) |
| sd-qa | LLM judge: correct against the reference? | % yes |
| openbookqa, mmsu | the chosen letter, exact match | % correct |
| ifeval | rule checks of each instruction | mean of % prompts and % instructions |
| bbh | the answer, exact match | % correct |
| advbench | refusal phrases | % refused |

LLM-judged subsets need `--grader openai`, which asks the `--judge-model` endpoint
(`--judge-base-url`, `--judge-key-env`; VoiceBench used gpt-4o-mini) and caches every
call like the bench does; without it they are skipped and say so. Results:
<out>/voicebench.jsonl (per item, resumable) and <out>/voicebench.json (per subset),
which `python -m bench.report ... --voicebench <out>/voicebench.json` puts beside the
ParaS2SBench table. ifeval instructions outside the checks below are reported as
unsupported and left out of the score.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.data.schema import Query, StyleVariant
from bench.data.voicebench_set import SCORERS, Item, read_subset
from bench.scoring import options
from bench.scoring.voicebench_rules import LLMGrader, markdown, score_item, summarise


def run(items: list[Item], system, asr, grader: LLMGrader | None, out: Path,
        concurrency: int = 4) -> list[dict]:
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
            rec.update(score_item(item, rec["response"], grader))
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


def main(argv: list[str] | None = None) -> int:
    from bench.backends.cache import Cache
    from bench.backends.remote import ConfigError, RateLimiter, RetryPolicy
    from bench.backends.runtime import Runtime

    ap = argparse.ArgumentParser(prog="python -m bench.voicebench",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="local copy of hlt-lab/voicebench")
    ap.add_argument("--subsets", default="openbookqa,ifeval,advbench", help="comma list")
    ap.add_argument("--split", default=None, help="one split (default: all present)")
    ap.add_argument("--limit", type=int, default=None, help="first N items per subset")
    ap.add_argument("--grader", default="none", choices=["none", "openai"])
    ours, rest = ap.parse_known_args(argv)
    args = options.parse_args(rest, prog="python -m bench.voicebench")
    try:
        subsets = [s.strip() for s in ours.subsets.split(",") if s.strip()]
        items = [i for s in subsets for i in read_subset(ours.root, s, ours.split)[:ours.limit]]
        runtime = Runtime(Cache(args.cache), retry=RetryPolicy(args.max_attempts, args.backoff),
                          limiter=RateLimiter(args.max_rps))
        system, asr, _, _ = options.build_backends(args, runtime)
        grader = None
        if ours.grader == "openai":
            grader = LLMGrader(options.endpoint(args, "judge"), runtime)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path("runs/voicebench") / options.slug(system.name)
    records = run(items, system, asr, grader, out, args.concurrency)
    summary = summarise(records, subsets, grader is not None)
    (out / "voicebench.json").write_text(json.dumps({system.name: summary}, indent=2) + "\n")
    print(markdown({system.name: summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
