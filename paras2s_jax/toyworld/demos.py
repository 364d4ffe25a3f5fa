"""Toy SFT demonstrations and held-out eval queries, written as JSONL shards.

Demonstrations are deliberately imperfect, like TTS-synthesised SFT data: a demo reply
has the right content with probability `p_right_content` (else the generic reply) and
the fitting voice with probability `p_right_voice` (else a neutral voice). Imitating
them scores about 4 of 5, leaving headroom for RL with the judge-distilled reward.

Record (one JSON object per line; the trainer's SFT format)::

    {"id": str, "prompt_text": [int], "prompt_audio": [int],
     "reply_text": [int], "reply_audio": [int], "scenario": {...}}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from paras2s_jax.toyworld.speech import speak
from paras2s_jax.toyworld.world import (
    NEUTRAL_VOICE,
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
    paths = {}
    for s in range(cfg.num_shards):
        paths[f"train_{s}"] = out / f"train-{s:05d}-of-{cfg.num_shards:05d}.jsonl"
        _write(paths[f"train_{s}"], train[s::cfg.num_shards])
    paths["eval"] = out / "eval-demos.jsonl"
    _write(paths["eval"], eval_demos)
    paths["queries"] = out / "eval-queries.jsonl"
    _write(paths["queries"], queries)
    return paths


def read_queries(path: str | Path) -> list[tuple[dict, Scenario]]:
    """(record, scenario) of every eval query in a JSONL file."""
    items = []
    with open(path) as f:
        for i, line in enumerate(f):
            rec = json.loads(line)
            if "scenario" not in rec or "prompt_audio" not in rec:
                raise ValueError(f"{path}: record {i} needs 'scenario' and 'prompt_audio'")
            items.append((rec, Scenario(**rec["scenario"])))
    return items
