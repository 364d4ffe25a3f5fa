"""Reward-model distillation data: sample N replies per query, judge each, write shards.

The paper samples 32 replies for each of 10k queries from the SFT model and has the
scoring pipeline rate them (320k calls). Work is cut into chunks of queries; chunk k is
written atomically to `distill-{k:05d}.jsonl` and sampled with `fold_in(seed, k)`, so
an interrupted run resumes at the first missing chunk and never judges a reply twice,
and the result does not depend on where it was interrupted. In a multi-process job all
processes sample every chunk together (the model spans them) and process k mod P
judges and writes chunk k, so the judge calls are split between the processes.

With `whisper_features` (`config.data.whisper_features`: an SFT model trained hearing
them) the model reads each query's Whisper features while it samples, placed at the
prompt's audio codes as in SFT. A query names them as SFT records do ("prompt_features",
a .npy path) or carries them ("whisper_features", float[len(prompt_audio), D]; written
to `features/` beside the shards), and every record names the file for the reward
model. Record (one per reply)::

    {"query_id", "prompt_text", "prompt_audio", "scenario", "sample", "reply_text",
     "reply_audio", "score", "rationale", "judge"(, "prompt_features")}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from paras2s_jax.policy import policy_for
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.train import prompt_features
from paras2s_jax.train.hosts import agreed

# (query record, reply text ids, reply audio codes) -> (score 1..5, rationale)
Judge = Callable[[dict, list[int], list[int]], tuple[int, str]]


class DistillJudge(Protocol):
    """An outside judge that brings its own prompts (e.g. the benchmark's pipeline, built by
    launch/train.py): `query_records` gives the prompts as distillation query records, and
    calling it scores one reply like a `Judge`. Any judge may also have `prepare(replies)`:
    `distill` hands it a chunk's (query record, reply text ids, reply audio codes) before
    calling it on each (the benchmark's judge sends their judge calls as one OpenAI batch
    there, with `config.distill.batch`)."""

    name: str

    def query_records(self, whisper_features: bool) -> list[dict]: ...

    def __call__(self, record: dict, text: list[int], audio: list[int]) -> tuple[int, str]: ...


def judge_all(judge_fn: Judge, replies: Sequence[tuple[dict, list[int], list[int]]]
              ) -> list[tuple[int, str]]:
    """(score, rationale) of each (query record, reply text, reply audio), in order, after
    handing them all to the judge's `prepare` when it has one (e.g. the benchmark's judge
    sends their calls as one batch and caches the answers)."""
    prepare = getattr(judge_fn, "prepare", None)
    if prepare is not None:
        prepare(replies)
    return [judge_fn(*reply) for reply in replies]


def judged_record(reply: tuple[dict, list[int], list[int]], score: int, why: str,
                  judge_name: str) -> dict:
    """A distillation record: the prompt (with its "prompt_features" file when the query
    names one), the reply and the judge's verdict."""
    q, text, audio = reply
    features = {"prompt_features": q["prompt_features"]} if "prompt_features" in q else {}
    return {"query_id": q["id"], "prompt_text": list(q.get("prompt_text", ())),
            "prompt_audio": list(q["prompt_audio"]), "scenario": q.get("scenario"),
            **features, "reply_text": list(text), "reply_audio": list(audio),
            "score": int(score), "rationale": why, "judge": judge_name}


def toy_judge(record: dict, text: list[int], audio: list[int]) -> tuple[int, str]:
    """The toy world's rule judge on the reply speech (what a listener hears)."""
    from paras2s_jax.toyworld import Scenario, judge

    verdict = judge(Scenario(**record["scenario"]), audio)
    return verdict.score, verdict.rationale


def chunk_path(out_dir: Path, chunk: int) -> Path:
    return out_dir / f"distill-{chunk:05d}.jsonl"


def distill(
    model: Any,
    queries: Sequence[dict],
    judge_fn: Judge,
    out_dir: str | Path,
    sampling: SamplingConfig,
    judge_name: str,
    seed: int = 0,
    chunk_queries: int = 16,
    progress: Callable[[int, int], None] | None = None,
    whisper_features: bool = False,
) -> dict[str, int]:
    """Write (query, reply, score) shards; returns counts of chunks done and skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = policy_for(model.config)
    chunks = [queries[i:i + chunk_queries] for i in range(0, len(queries), chunk_queries)]
    # Which chunks are missing is decided once, for every process: sampling is collective.
    todo = agreed(np.asarray([not chunk_path(out, k).exists() for k in range(len(chunks))]))
    done = skipped = 0
    for k, chunk in enumerate(chunks):
        path = chunk_path(out, k)
        if not todo[k]:
            skipped += 1
            continue
        # Pad to a fixed number of prompts: one compilation for every chunk.
        prompts = policy.prompt_batch(chunk, sampling.prompt_bucket, whisper_features,
                                      rows=chunk_queries)
        sampled = policy.replies(policy.sample(model, prompts, jax.random.fold_in(
            jax.random.key(seed), k), sampling))
        done += 1
        if k % jax.process_count() != jax.process_index():
            continue  # another process judges and writes this chunk
        g = sampling.num_samples
        replies = [(q, *sampled[qi * g + s]) for qi, q in enumerate(chunk) for s in range(g)]
        verdicts = judge_all(judge_fn, replies)
        records = []
        for qi, q in enumerate(chunk):
            for s in range(g):
                records.append({**judged_record(replies[qi * g + s], *verdicts[qi * g + s],
                                                judge_name), "sample": s})
                if whisper_features:
                    records[-1]["prompt_features"] = _feature_file(out, k, qi, q,
                                                                   prompts.features[qi])
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        tmp.replace(path)
        if progress:
            progress(k + 1, len(chunks))
    if jax.process_count() > 1:  # readers of `out_dir` must see every process's chunks
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"distillation written to {out}")
    return {"chunks_written": done, "chunks_skipped": skipped, "chunks": len(chunks)}


def _feature_file(out: Path, chunk: int, index: int, query: dict, feats: np.ndarray) -> str:
    """The query's feature file: its own, else `features/` beside the shards (written once)."""
    if "prompt_features" in query:
        return str(Path(query["prompt_features"]).resolve())
    name = f"features/{chunk:05d}-{index:04d}.npy"
    if not (out / name).exists():
        (out / "features").mkdir(exist_ok=True)
        tmp = (out / name).with_suffix(".tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(feats, np.float32))
        tmp.replace(out / name)
    return name  # relative to the shard, as in SFT records


def read_scored(paths: Sequence[str | Path]) -> list[dict]:
    """Every record of distillation shards, checked for the fields training needs;
    "prompt_features" paths are resolved against their shard."""
    records = []
    for path in paths:
        with open(path) as f:
            for i, line in enumerate(f, start=1):
                rec = json.loads(line)
                for field in ("prompt_audio", "reply_text", "reply_audio", "score"):
                    if field not in rec:
                        raise ValueError(f"{path}:{i}: missing field {field!r}")
                if not 1 <= int(rec["score"]) <= 5:
                    raise ValueError(f"{path}:{i}: score {rec['score']} is not in 1..5")
                records.append(prompt_features.resolve(rec, path))
    return records
