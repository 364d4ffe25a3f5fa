"""Toy SFT demonstrations and held-out eval queries, written as JSONL shards.

Demonstrations are deliberately imperfect, like TTS-synthesised SFT data: a demo reply
has the right content with probability `p_right_content` (else the generic reply) and
the fitting voice with probability `p_right_voice` (else a neutral voice). Imitating
them scores about 4 of 5, leaving headroom for RL with the judge-distilled reward.

The training shards also hold general-ability demonstrations (`toyworld/general.py`:
style-independent requests, right answer in a neutral voice), marked by a "general"
field instead of "scenario"; `general-queries.jsonl` holds fresh renderings of every
general request for the forgetting probe. RL prompts (`rl_prompts`) exclude them.

Record (one JSON object per line; the trainer's SFT format)::

    {"id": str, "prompt_text": [int], "prompt_audio": [int],
     "reply_text": [int], "reply_audio": [int], "scenario": {...} or "general": {...}}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from paras2s_jax.toyworld.general import Request, requests
from paras2s_jax.toyworld.speech import speak
from paras2s_jax.toyworld.world import (
    NEUTRAL_VOICE,
    STYLE_PAIRS,
    Scenario,
    encode_words,
    scenarios,
    split_texts,
)


@dataclasses.dataclass(frozen=True)
class ToyDataConfig:
    """How much toy data to write and how noisy it is."""

    seed: int = 0
    eval_fraction: float = 0.25  # share of (template, topic) texts held out
    renderings: int = 8  # demonstrations per (text, style): fresh noise each
    speaker_noise: float = 0.1  # chance a prosody code comes from a random style
    p_right_content: float = 0.8  # demo replies with the right content (else generic)
    p_right_voice: float = 0.5  # demo replies in the fitting voice (else neutral)
    num_shards: int = 4  # training JSONL shards
    general_renderings: int = 8  # demonstrations per general-ability request


def demonstration(
    sc: Scenario, rng: np.random.Generator, cfg: ToyDataConfig, uid: str
) -> dict:
    """One SFT record for `sc`, drawn from the imperfect demonstrator."""
    words = sc.reply_words() if rng.random() < cfg.p_right_content else sc.generic_words()
    voice = sc.reply_voice() if rng.random() < cfg.p_right_voice else NEUTRAL_VOICE
    return {
        "id": uid,
        "prompt_text": [],
        "prompt_audio": speak(sc.words, sc.style, rng, cfg.speaker_noise),
        "reply_text": encode_words(words),
        "reply_audio": speak(words, voice, rng, cfg.speaker_noise),
        "scenario": sc.to_json(),
    }


def query(sc: Scenario, rng: np.random.Generator, cfg: ToyDataConfig, uid: str) -> dict:
    """One held-out eval query: the spoken prompt and its scenario (no reply)."""
    return {
        "id": uid,
        "prompt_text": [],
        "prompt_audio": speak(sc.words, sc.style, rng, cfg.speaker_noise),
        "scenario": sc.to_json(),
    }


def general_record(req: Request, rng: np.random.Generator, cfg: ToyDataConfig, uid: str,
                   with_reply: bool) -> dict:
    """A general-ability demonstration (right answer, neutral voice) or query."""
    rec = {"id": uid, "prompt_text": [],
           "prompt_audio": speak(req.words, req.style, rng, cfg.speaker_noise)}
    if with_reply:
        rec["reply_text"] = encode_words(req.answer())
        rec["reply_audio"] = speak(req.answer(), NEUTRAL_VOICE, rng, cfg.speaker_noise)
    rec["general"] = req.to_json()
    return rec


def _general(cfg: ToyDataConfig) -> tuple[list[dict], list[dict]]:
    """(training demonstrations, probe queries) of every general request, each said in
    random input styles. A separate RNG leaves the paralinguistic data unchanged."""
    rng = np.random.default_rng([cfg.seed, 1])
    styles = [s for pair in STYLE_PAIRS.values() for s in pair]

    def draw(kind: str, topic: str) -> Request:
        return Request(kind, topic, styles[rng.integers(len(styles))])

    demos = [general_record(draw(*kt), rng, cfg, f"general-{i}-{k}", True)
             for i, kt in enumerate(requests()) for k in range(cfg.general_renderings)]
    queries = [general_record(draw(*kt), rng, cfg, f"general-query-{i}-{k}", False)
               for i, kt in enumerate(requests()) for k in range(2)]
    return demos, queries


def _write(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(path)  # atomic: concurrent processes never read half a file


def write_toy_data(out_dir: str | Path, cfg: ToyDataConfig = ToyDataConfig()) -> dict[str, Path]:
    """Write train shards, held-out demonstrations and held-out queries; return the paths.

    Deterministic in `cfg.seed`; rewriting gives byte-identical files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    train_texts, eval_texts = split_texts(cfg.eval_fraction, cfg.seed)
    train = [demonstration(sc, rng, cfg, f"train-{i}-{k}")
             for i, sc in enumerate(scenarios(train_texts)) for k in range(cfg.renderings)]
    held = scenarios(eval_texts)
    eval_demos = [demonstration(sc, rng, cfg, f"eval-{i}") for i, sc in enumerate(held)]
    queries = [query(sc, rng, cfg, f"query-{i}") for i, sc in enumerate(held)]
    general_demos, general_queries = _general(cfg)
    train += general_demos
    paths = {}
    for s in range(cfg.num_shards):
        paths[f"train_{s}"] = out / f"train-{s:05d}-of-{cfg.num_shards:05d}.jsonl"
        _write(paths[f"train_{s}"], train[s::cfg.num_shards])
    paths["eval"] = out / "eval-demos.jsonl"
    _write(paths["eval"], eval_demos)
    paths["queries"] = out / "eval-queries.jsonl"
    _write(paths["queries"], queries)
    paths["general_queries"] = out / "general-queries.jsonl"
    _write(paths["general_queries"], general_queries)
    return paths


def rl_prompts(data_dir: str | Path) -> list[dict]:
    """The RL prompts of a toy data directory: each distinct paralinguistic training
    prompt once (general-ability requests are never RL prompts)."""
    prompts: dict[tuple, dict] = {}
    for path in sorted(Path(data_dir).glob("train-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "scenario" in rec:
                prompts.setdefault(tuple(rec["prompt_audio"]), rec)
    return list(prompts.values())


def _read_targets(path: str | Path, field: str, make) -> list[tuple[dict, object]]:
    items = []
    with open(path) as f:
        for i, line in enumerate(f):
            rec = json.loads(line)
            if field not in rec or "prompt_audio" not in rec:
                raise ValueError(f"{path}: record {i} needs {field!r} and 'prompt_audio'")
            items.append((rec, make(**rec[field])))
    return items


def read_general_queries(path: str | Path) -> list[tuple[dict, Request]]:
    """(record, request) of every general-ability probe query in a JSONL file."""
    return _read_targets(path, "general", Request)


def read_queries(path: str | Path) -> list[tuple[dict, Scenario]]:
    """(record, scenario) of every eval query in a JSONL file."""
    return _read_targets(path, "scenario", Scenario)
