"""TensorBoard scalars and a profiler trace are written and can be read back."""

import jax
import jax.numpy as jnp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from paras2s_jax.train.metrics import MetricWriter, ProfileWindow


def test_scalars_and_profile_trace(tmp_path):
    writer = MetricWriter(tmp_path, total_steps=4, progress=False)
    profile = ProfileWindow(tmp_path, start=1, num_steps=2)
    f = jax.jit(lambda x: jnp.sin(x) @ x.T)
    x = jnp.ones((16, 16))
    for step in range(4):
        profile.before_step(step)
        y = f(x)
        profile.after_step(step, block_on=y)
        writer.train_step(step, {"loss": 1.0 / (step + 1), "loss_text": 0.5, "loss_audio": 0.5,
                                 "lr": 1e-3, "grad_norm": 2.0, "tokens": 100, "skipped": 0},
                          step_time=0.5)
    writer.scalars(4, {"loss": 0.1}, prefix="eval")
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/loss_text", "train/loss_audio", "train/lr",
                "train/grad_norm", "train/tokens_per_s", "train/step_time_s", "eval/loss"):
        assert tag in tags
    assert [e.value for e in acc.Scalars("train/tokens_per_s")] == [200.0] * 4
    traces = list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    assert traces, "no profiler trace written"
