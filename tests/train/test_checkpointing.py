"""Checkpoints: keep the last N plus the best by metric; state and data position round-trip."""

import jax
import jax.numpy as jnp
import numpy as np

from paras2s_jax.model import tiny
from paras2s_jax.train import data as data_lib
from paras2s_jax.train.checkpointing import CheckpointConfig, Checkpointer, abstract_like


def _state(v: float) -> dict:
    return {"params": {"w": jnp.full((4, 2), v)}, "step": jnp.asarray(int(v), jnp.int32),
            "rng": jax.random.PRNGKey(0)}


def test_keep_last_n_plus_best(tmp_path):
    ckpt = Checkpointer(CheckpointConfig(str(tmp_path), keep_last=2, keep_best=1,
                                         best_metric="eval/loss", best_mode="min"))
    losses = {1: 5.0, 2: 1.0, 3: 4.0, 4: 3.0, 5: 6.0, 6: None}
    for step, loss in losses.items():
        ckpt.save(step, _state(step), metrics=None if loss is None else {"eval/loss": loss})
        ckpt.wait()
    assert sorted(ckpt.all_steps()) == [2, 5, 6]  # best (loss 1.0) + the last two
    assert ckpt.best_step() == 2
    assert ckpt.latest_step() == 6
    ckpt.close()
    # After a restart the ranking comes back from disk: the best survives new saves.
    again = Checkpointer(CheckpointConfig(str(tmp_path), keep_last=2, keep_best=1,
                                          best_metric="eval/loss", best_mode="min"))
    assert again.best_step() == 2
    for step in (7, 8):
        again.save(step, _state(step), metrics={"eval/loss": 2.0})
        again.wait()
    assert sorted(again.all_steps()) == [2, 7, 8]
    again.close()


def test_best_mode_max(tmp_path):
    ckpt = Checkpointer(CheckpointConfig(str(tmp_path), keep_last=1, keep_best=1,
                                         best_metric="eval/score", best_mode="max"))
    for step, score in ((1, 2.0), (2, 4.5), (3, 3.0), (4, 1.0)):
        ckpt.save(step, _state(step), metrics={"eval/score": score})
    ckpt.wait()
    assert sorted(ckpt.all_steps()) == [2, 4]
    ckpt.close()


def test_restore_state_and_data_position(tmp_path):
    mc = tiny()
    rng = np.random.default_rng(0)
    records = [data_lib.validate_record({"prompt_audio": rng.integers(0, 256, 3).tolist(),
                                         "reply_text": [1, 2], "reply_audio": [3]}, mc, "x")
               for _ in range(10)]
    ds = data_lib.train_dataset(records, mc, 2, [32], seed=0, process_index=0, process_count=1)
    it = iter(ds)
    for _ in range(3):
        next(it)
    ckpt = Checkpointer(CheckpointConfig(str(tmp_path), keep_best=0))
    state = _state(3.0)
    ckpt.save(3, state, it, meta={"stage": "test"})
    expected = next(it)
    ckpt.wait()

    fresh = iter(ds)
    replicated = jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",)), jax.sharding.PartitionSpec())
    target = abstract_like(state, jax.tree.map(lambda _: replicated, state))
    restored, meta = ckpt.restore(3, target, fresh)
    assert meta == {"stage": "test", "step": 3}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(next(fresh)["audio"], expected["audio"])
    ckpt.close()
