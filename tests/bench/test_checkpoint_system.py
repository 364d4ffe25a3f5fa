"""bench.score --system checkpoint on random real-layout checkpoints: end to end, cached."""

from __future__ import annotations

import json

import pytest

from bench import score
from bench.data.schema import read_judgements


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from paras2s_jax.audio import write_random_speech
    from paras2s_jax.checkpoint import import_hf
    from paras2s_jax.checkpoint.orbax_io import save_model
    from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint
    from paras2s_jax.model.config import tiny

    root = tmp_path_factory.mktemp("ckpt")
    write_random_checkpoint(root / "hf", tiny(), seed=0)
    save_model(root / "orbax", import_hf(root / "hf"))
    write_random_speech(root / "speech", "tiny", seed=0)
    return root / "orbax", root / "speech"


def _ledger(out):
    return [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]


@pytest.mark.slow  # the detokenizer compiles once per reply length (~15 s each on 2 cores)
def test_scores_the_offline_set_and_a_rerun_reuses_every_reply(checkpoints, tmp_path):
    orbax, speech = checkpoints
    argv = ["--system", "checkpoint", "--system-path", str(orbax), "--system-speech",
            str(speech), "--system-max-new-tokens", "16", "--cache", str(tmp_path / "c.sqlite"),
            "--no-progress", "--no-plots"]
    status = score.main([*argv, "--out", str(tmp_path / "one")])
    first = read_judgements(tmp_path / "one" / "judgements.jsonl")
    assert status == int(any(j.score is None for j in first))  # 1: some items failed
    assert len(first) == 8  # the bundled offline set: 4 queries x 2 styles
    spoken = [j for j in first if j.score is not None]
    assert spoken, [j.error for j in first]
    for j in first:  # spoken and scored, or no codes, or a reply too short to score
        assert (j.score is not None or (j.error_stage == "system" and "no audio codes" in j.error)
                or (j.error_stage == "reply_audio" and "too short" in j.error)), j.error
    assert all(j.system == f"checkpoint/{orbax.name}" for j in first)

    # A fresh results folder over the same cache: every spoken reply comes from the cache.
    assert score.main([*argv, "--out", str(tmp_path / "two")]) == status
    second = {j.item_id: j for j in read_judgements(tmp_path / "two" / "judgements.jsonl")}
    assert {j.item_id: j.score for j in first} == {k: j.score for k, j in second.items()}
    system_calls = [e for e in _ledger(tmp_path / "two") if e["role"] == "system"]
    cached = [e for e in system_calls if e["cached"]]
    assert len(cached) == sum(j.error_stage != "system" for j in first)
