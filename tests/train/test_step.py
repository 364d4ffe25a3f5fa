"""The shared train step: NaN/Inf guard, exact gradient accumulation, sharded == unsharded."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import sft as sft_config
from paras2s_jax.toyworld import ToyDataConfig, write_toy_data
from paras2s_jax.train import data as data_lib
from paras2s_jax.train import sft, trainer
from paras2s_jax.train.step import build_train_step, init_state, micro_batches, unmicro


def _linear_setup(accum: int = 1):
    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(m, batch, rng):
        err = (m(batch["x"])[:, 0] - batch["y"]) ** 2
        w = batch["w"]
        return {"mse": (jnp.sum(err * w), jnp.sum(w))}

    def count_fn(batch):
        return {"mse": jnp.sum(batch["w"])}

    tx = optax.sgd(0.1)
    step = jax.jit(build_train_step(graphdef, loss_fn, count_fn, {"mse": 1.0}, tx,
                                    optax.constant_schedule(0.1), accum_steps=accum))
    return (lambda state, batch: step(state, batch, rest)), init_state(params, tx, seed=0)


def _batch(bad: bool = False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    if bad:
        x[2, 1] = np.nan
    # uneven weights: a mean of micro-batch means would differ from the true mean
    return {"x": jnp.asarray(x), "y": jnp.asarray(rng.normal(size=4), jnp.float32),
            "w": jnp.asarray([1.0, 0.0, 3.0, 2.0])}


def test_micro_batches_keep_groups_whole_and_unmicro_inverts():
    rows = jnp.arange(24)  # 6 prompts x G = 4, prompt-major
    strided = micro_batches({"x": rows}, 3)["x"]
    np.testing.assert_array_equal(strided[1], [1, 4, 7, 10, 13, 16, 19, 22])
    grouped = micro_batches({"x": rows}, 3, group=4)["x"]
    # Micro-batch i holds prompts i and i + 3, each with its 4 rows in order.
    np.testing.assert_array_equal(grouped[1], [4, 5, 6, 7, 16, 17, 18, 19])
    for group, split in ((1, strided), (4, grouped)):
        np.testing.assert_array_equal(unmicro(split, group), rows)
    with pytest.raises(ValueError, match="whole groups of 4 rows"):
        micro_batches({"x": rows}, 4, group=4)


def test_nan_guard_skips_update_and_records_it():
    step, state = _linear_setup()
    before = jax.tree.map(np.asarray, state)
    state, metrics = step(state, _batch(bad=True))
    assert int(metrics["skipped"]) == 1
    for a, b in zip(jax.tree.leaves(before["params"]), jax.tree.leaves(state["params"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(state["step"]) == 1  # the data moves on; the model does not
    state, metrics = step(state, _batch())
    assert int(metrics["skipped"]) == 0 and np.isfinite(float(metrics["loss"]))
    assert not np.array_equal(jax.tree.leaves(before["params"])[0],
                              jax.tree.leaves(state["params"])[0])


def test_accumulation_gives_the_true_token_mean():
    step1, s1 = _linear_setup(accum=1)
    step2, s2 = _linear_setup(accum=2)
    s1, m1 = step1(s1, _batch())
    s2, m2 = step2(s2, _batch())
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(m1["grad_norm"]), float(m2["grad_norm"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(s1["params"]), jax.tree.leaves(s2["params"]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def _toy_losses(tmp_path, mesh: dict, devices, steps: int = 3, accum: int = 1):
    cfg = sft_config.get_config("toy")
    paths = write_toy_data(tmp_path / "toy", ToyDataConfig(renderings=1, num_shards=1))
    with cfg.unlocked():
        cfg.workdir = str(tmp_path / "run")
        cfg.mesh.data, cfg.mesh.fsdp = mesh["data"], mesh["fsdp"]
        cfg.optimizer.accum_steps = accum
    run = trainer.setup(cfg, devices=devices)
    records = data_lib.read_records([paths["train_0"]], run.model_config)
    it = iter(data_lib.train_dataset(records, run.model_config, 16, [48], seed=0))
    step = trainer.jit_step(run, build_train_step(
        run.graphdef, sft.sft_loss, sft.sft_counts, {"text": 1.0, "audio": 1.0}, run.tx,
        run.schedule, accum))
    losses, state = [], run.state
    for _ in range(steps):
        batch = data_lib.to_global(next(it), run.batch_sharding(2))
        state, metrics = step(state, batch, run.rest)
        losses.append(float(metrics["loss"]))
    return losses


def test_fsdp_data_parallel_matches_single_device(tmp_path):
    single = _toy_losses(tmp_path / "a", {"data": 1, "fsdp": 1}, jax.devices()[:1])
    sharded = _toy_losses(tmp_path / "b", {"data": 2, "fsdp": 4}, jax.devices()[:8], accum=2)
    np.testing.assert_allclose(single, sharded, rtol=2e-5)
    assert single[-1] < single[0]
