"""Write ParaS2SBench queries with an LLM and filter them: `python -m bench.generate`.

    # 1. generate + deduplicate + triple filter (any OpenAI-compatible server)
    python -m bench.generate run --out runs/gen --dimensions emotion,sarcasm,age,gender \
        --batches 2 --per-batch 10 --model gpt-4.1 [--base-url URL --key-env NAME]
    # 2. people review runs/gen/review.csv (decision = accept | reject), then
    python -m bench.generate review --out runs/gen --sheet runs/gen/review.csv
    # 3. speech: see bench.synth (N TTS candidates per style + selection)

    # Offline, no LLM: the hand-written drafts behind the bundled set
    python -m bench.generate seed --out runs/seed --per-dimension 1

Per dimension and batch one generation call writes candidates (neutral text, two
contrastive styles, scenario, per-style reference notes and example replies). Exact
duplicates (and near ones, with --embed-model DIR) are dropped *before* the filters so
they cost nothing. Then each candidate meets the three filters in order, one LLM call
each (neutrality, plausibility, relevance); the first failure drops it, and every
verdict keeps its reason. Extension dimensions: --dimensions-file (see bench.data.dimensions).

Outputs in --out: candidates.jsonl (every draft with its verdicts), kept.jsonl,
dropped.jsonl, review.csv, summary.json, ledger.jsonl (every call, cost estimates),
dimensions.json (the table used). Every call is cached in SQLite (--cache) the moment
its answer arrives and progress.jsonl records each finished candidate, so re-running
the same command after a crash or SIGKILL repeats no call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.backends.cache import Cache
from bench.backends.remote import ConfigError, Endpoint, RateLimiter, RetryPolicy, usage_of
from bench.backends.runtime import Runtime
from bench.data.dedup import Embedder, deduplicate, hf_embedder
from bench.data.dimensions import DATASET_FILE, DimensionSpec, load_dimensions, write_table
from bench.data.drafts import (
    Draft,
    Verdict,
    draft_from_dict,
    draft_to_dict,
    read_drafts,
    write_drafts,
)
from bench.data.gen_prompts import (
    FILTERS,
    ParseError,
    filter_messages,
    generation_messages,
    parse_candidates,
    parse_verdict,
)
from bench.data.review import export_sheet, import_sheet
from bench.data.schema import JsonlAppender, iter_jsonl


class ChatLLM:
    """Chat completions of an OpenAI-compatible server, through the cached Runtime."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime):
        self.endpoint, self.runtime = endpoint, runtime
        self._client = endpoint.client()

    def ask(self, role: str, messages: list[dict], temperature: float, reask: int = 0) -> str:
        def compute():
            resp = self._client.chat.completions.create(
                model=self.endpoint.model, messages=messages, temperature=temperature)
            return {"text": resp.choices[0].message.content or ""}, usage_of(resp)

        inputs = {"messages": messages, "temperature": temperature}
        if reask:  # a re-ask after a malformed answer is a new call, not the cached one
            inputs["reask"] = reask
        return self.runtime.call(role, "openai-chat", self.endpoint.label(), inputs, compute,
                                 remote=True)["text"]


def _ask_parsed(llm: ChatLLM, role: str, messages: list[dict], temperature: float,
                parse, reasks: int):
    err: ParseError | None = None
    for k in range(reasks + 1):
        try:
            return parse(llm.ask(role, messages, temperature, reask=k))
        except ParseError as e:
            err = e
    raise ParseError(f"{err} (after {reasks + 1} answers)")


def generate_candidates(llm: ChatLLM, spec: DimensionSpec, batch: int, count: int,
                        temperature: float, reasks: int) -> tuple[list[Draft], list[str]]:
    """Drafts of one generation call, and problems with items that could not be read."""
    msgs = generation_messages(spec, count, batch)
    try:
        items = _ask_parsed(llm, "generate", msgs, temperature,
                            lambda t: parse_candidates(t, spec.name), reasks)
    except ParseError as err:
        return [], [f"{spec.name} batch {batch}: unusable answer: {err}"]
    drafts, problems = [], []
    for i, (fields, problem) in enumerate(items):
        if problem:
            problems.append(f"{spec.name} batch {batch}: {problem}")
            continue
        drafts.append(Draft(id=f"{spec.name}-b{batch}-{i}", origin=f"{spec.name}/batch{batch}/{i}",
                            **fields))
    return drafts, problems


def apply_filters(llm: ChatLLM, draft: Draft, spec: DimensionSpec, reasks: int) -> Draft:
    """Run the filters in order; stop at the first failure (its reason is kept)."""
    for f in FILTERS:
        try:
            passed, reason = _ask_parsed(llm, f"filter-{f.name}", filter_messages(f, draft, spec),
                                         0.0, parse_verdict, reasks)
        except ParseError as err:  # an unreadable check cannot vouch for the item
            passed, reason = False, f"no usable verdict: {err}"
        draft = draft.with_verdict(Verdict(f.name, passed, reason))
        if not passed:
            break
    return draft


def run(llm: ChatLLM, specs: dict[str, DimensionSpec], dims: list[str], out: Path,
        batches: int = 1, per_batch: int = 10, temperature: float = 0.9, reasks: int = 1,
        concurrency: int = 4, embed: Embedder | None = None, threshold: float = 0.92) -> dict:
    """The whole pipeline into `out`; returns the summary (also written to summary.json)."""
    out.mkdir(parents=True, exist_ok=True)
    unknown = [d for d in dims if d not in specs]
    if unknown:
        raise ConfigError(f"unknown dimension {unknown[0]!r}; known: {sorted(specs)} "
                          "(add it with --dimensions-file)")
    progress_path = out / "progress.jsonl"
    done: dict[str, Draft] = {}
    if progress_path.exists():
        for n, raw in iter_jsonl(progress_path, tolerate_torn_tail=True):
            d = draft_from_dict(raw, progress_path, n)
            done[d.id] = d
    progress = JsonlAppender(progress_path)
    problems: list[str] = []
    candidates: list[Draft] = []
    for dim in dims:
        for b in range(batches):
            drafts, probs = generate_candidates(llm, specs[dim], b, per_batch, temperature, reasks)
            candidates += drafts
            problems += probs
    unique, dups = deduplicate(candidates, embed, threshold)
    # Progress counts only for the very same candidate: a changed prompt (other
    # --per-batch, other table) reuses ids for new content.
    todo = [d for d in unique if d.id not in done
            or dataclasses.replace(done[d.id], verdicts=()) != d]

    def work(d: Draft) -> Draft:
        d = apply_filters(llm, d, specs[d.dimension], reasks)
        progress.append(draft_to_dict(d))
        return d

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        for d in pool.map(work, todo):
            done[d.id] = d
    progress.close()
    order = {d.id: i for i, d in enumerate(candidates)}
    final = sorted([done[d.id] for d in unique] + dups, key=lambda d: order[d.id])
    kept = [d for d in final if d.dropped_by is None]
    dropped = [d for d in final if d.dropped_by is not None]
    write_drafts(out / "candidates.jsonl", final)
    write_drafts(out / "kept.jsonl", kept)
    write_drafts(out / "dropped.jsonl", dropped)
    export_sheet(kept, out / "review.csv")
    write_table({k: specs[k] for k in dims}, out / DATASET_FILE)
    summary = {
        "candidates": len(final), "kept": len(kept),
        "dropped_by": dict(Counter(d.dropped_by.filter for d in dropped)),
        "kept_by_dimension": dict(Counter(d.dimension for d in kept)),
        "unreadable_items": problems,
        "calls": llm.runtime.totals.calls, "cached_calls": llm.runtime.totals.cached,
        "estimated_cost_usd": round(llm.runtime.totals.cost_usd, 6),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def seed_drafts(per_dimension: int | None = None) -> list[Draft]:
    """The hand-written drafts of bench.data.make_offline_set as Draft records (no LLM)."""
    from bench.data.make_offline_set import TEMPLATES

    out, counts = [], Counter()
    for qid, dim, text, scenario, blind, styles in TEMPLATES:
        if per_dimension is not None and counts[dim] >= per_dimension:
            continue
        counts[dim] += 1
        out.append(draft_from_dict({
            "id": qid, "dimension": dim, "text": text, "scenario": scenario,
            "neutral_reply": blind, "origin": "bench.data.make_offline_set.TEMPLATES",
            "verdicts": [{"filter": "review", "passed": True, "reason": "hand-written"}],
            "styles": [{"name": n, "description": how, "reference": ref, "reply": reply,
                        "reply_style": rs} for n, how, ref, reply, rs in styles]}))
    return out


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate, deduplicate, filter")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--dimensions", default="emotion,sarcasm,age,gender")
    r.add_argument("--dimensions-file", type=Path, default=None,
                   help="extra/overriding dimension table (JSON, see bench.data.dimensions)")
    r.add_argument("--batches", type=int, default=1, help="generation calls per dimension")
    r.add_argument("--per-batch", type=int, default=10, help="candidates asked per call")
    r.add_argument("--model", default="gpt-4.1")
    r.add_argument("--base-url", default=None)
    r.add_argument("--key-env", default="OPENAI_API_KEY", help="NAME of the key variable")
    r.add_argument("--temperature", type=float, default=0.9, help="generation (filters: 0)")
    r.add_argument("--reasks", type=int, default=1, help="re-asks after a malformed answer")
    r.add_argument("--concurrency", type=int, default=4)
    r.add_argument("--cache", type=Path, default=None, help="default: <out>/cache.sqlite")
    r.add_argument("--embed-model", default=None, help="local encoder dir for near-duplicates")
    r.add_argument("--embed-threshold", type=float, default=0.92)
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("--max-attempts", type=int, default=5)
    r.add_argument("--backoff", type=float, default=1.0)
    r.add_argument("--max-rps", type=float, default=0.0)
    v = sub.add_parser("review", help="apply a filled-in review sheet")
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--sheet", type=Path, required=True)
    s = sub.add_parser("seed", help="write the hand-written offline drafts (no LLM)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--per-dimension", type=int, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    try:
        return _main(args)
    except (FileNotFoundError, ValueError) as err:  # ValueError: SchemaError, ConfigError
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cmd == "seed":
        write_drafts(args.out / "accepted.jsonl", seed_drafts(args.per_dimension))
        print(f"wrote {args.out / 'accepted.jsonl'}")
        return 0
    if args.cmd == "review":
        accepted, rejected, pending = import_sheet(args.sheet, read_drafts(args.out /
                                                                           "kept.jsonl"))
        write_drafts(args.out / "accepted.jsonl", accepted)
        write_drafts(args.out / "rejected.jsonl", rejected)
        print(f"accepted {len(accepted)}, rejected {len(rejected)}, not reviewed {len(pending)}"
              f" -> {args.out / 'accepted.jsonl'}")
        return 0
    specs = load_dimensions(args.dimensions_file)
    endpoint = Endpoint(args.model, args.base_url, args.key_env, args.timeout)
    runtime = Runtime(Cache(args.cache or args.out / "cache.sqlite"), args.out / "ledger.jsonl",
                      RetryPolicy(args.max_attempts, args.backoff), limiter=RateLimiter(
                          args.max_rps))
    embed = hf_embedder(args.embed_model) if args.embed_model else None
    llm = ChatLLM(endpoint, runtime)
    dims = [d.strip() for d in args.dimensions.split(",") if d.strip()]
    summary = run(llm, specs, dims, args.out, args.batches, args.per_batch,
                  args.temperature, args.reasks, args.concurrency, embed, args.embed_threshold)
    runtime.close()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
