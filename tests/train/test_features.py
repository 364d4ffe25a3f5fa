"""Prompt Whisper features: validated against their records, placed at the prompt's audio
positions, and fed to the model by the SFT loss."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.train import data as data_lib
from paras2s_jax.train.sft import sft_loss

MC = tiny()


def _shard(tmp_path, n: int = 6, bad: int | None = None):
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        codes = rng.integers(0, 256, size=3 + i % 3).tolist()
        rows = len(codes) + (1 if i == bad else 0)
        np.save(tmp_path / f"f{i}.npy", rng.normal(size=(rows, MC.adaptor_input_dim)))
        records.append({"prompt_audio": codes, "reply_text": [1, 2], "reply_audio": [3, 4],
                        "prompt_features": f"f{i}.npy"})
    path = tmp_path / "shard.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_features_are_validated(tmp_path):
    path = _shard(tmp_path, bad=4)
    with pytest.raises(data_lib.DataError, match=r"record 4: field 'prompt_features': .* shape"):
        data_lib.read_records([path], MC, whisper_features=True)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["prompt_features"]
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data_lib.DataError, match="record 1: missing field 'prompt_features'"):
        data_lib.read_records([path], MC, whisper_features=True)
    assert len(data_lib.read_records([path], MC)) == 6  # ignored when features are off


def test_features_reach_the_model(tmp_path):
    records = data_lib.read_records([_shard(tmp_path)], MC, whisper_features=True)
    it = iter(data_lib.train_dataset(records, MC, 4, [32], seed=0, process_index=0,
                                     process_count=1, whisper_features=True))
    batch = next(it)
    feats = batch["whisper_features"]
    assert feats.shape == (4, 32, MC.adaptor_input_dim)
    assert np.all(feats[~batch["continuous"]] == 0)
    assert np.all(np.abs(feats[batch["continuous"]]).sum(-1) > 0)

    model = KimiAudio(MC, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    loss = jax.jit(lambda s, b: sft_loss(nnx.merge(graphdef, s), b))
    with_f = loss(state, batch)
    without = loss(state, {k: v for k, v in batch.items() if k != "whisper_features"})
    assert float(with_f["audio"][0]) != float(without["audio"][0])
    assert float(with_f["audio"][1]) == float(without["audio"][1])

    evals = data_lib.eval_batches(records, MC, 4, [32], whisper_features=True)
    assert all(b["whisper_features"].shape[:2] == b["text"].shape for b in evals)
