"""Compiled plans: loop-aware HLO accounting, sharded abstract arguments, every jitted
function of a stage (eval included), the time estimate, the CLI verdict and table."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import grpo as grpo_config
from configs import reward as reward_config
from configs import sft as sft_config
from paras2s_jax import layout
from paras2s_jax.policy import KimiAudioPolicy
from paras2s_jax.sharding import MeshConfig, make_mesh
from paras2s_jax.train import grpo_models, grpo_stage, plan, reward_stage, sft_stage, trainer
from paras2s_jax.train.hlo import analyse, group_size, shape_bytes, wire_bytes

ROOT = Path(__file__).resolve().parents[2]
needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


def test_hlo_flops_multiply_loop_trips_and_collectives_are_counted():
    def f(x, w):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=6)[0]

    x = jax.ShapeDtypeStruct((32, 64), jnp.float32)
    w = jax.ShapeDtypeStruct((64, 64), jnp.float32)
    stats = analyse(jax.jit(f).lower(x, w).compile().as_text())
    assert stats.dot_flops == 6 * 2 * 32 * 64 * 64  # cost_analysis would count one trip
    assert shape_bytes("(s32[], bf16[2,3]{1,0}, f32[4])") == 4 + 12 + 16

    if jax.device_count() >= 8:
        mesh = make_mesh(MeshConfig(data=1, fsdp=8))
        split = NamedSharding(mesh, P("fsdp"))
        xs = jax.ShapeDtypeStruct((64, 256), jnp.float32, sharding=split)
        ws = jax.ShapeDtypeStruct((256, 256), jnp.float32, sharding=split)
        gathered = analyse(jax.jit(lambda x, w: x @ w, out_shardings=split)
                           .lower(xs, ws).compile().as_text())
        assert gathered.collective_bytes["all-gather"] >= 256 * 256 * 4  # w gathered whole
        # Each device already holds 1/8 of what it gathers: it sends the other 7/8.
        assert gathered.wire_bytes["all-gather"] == pytest.approx(
            gathered.collective_bytes["all-gather"] * 7 / 8)


def test_collective_groups_and_ring_traffic():
    # The three ways XLA writes replica groups, and the empty list (every partition).
    assert group_size("%x), replica_groups=[4,2]<=[2,4]T(1,0), dimensions={1}", 8) == 2
    assert group_size("%x), replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}", 8) == 4
    assert group_size("%x), replica_groups=mesh['a'=2,'b'=4] {'a','b'}", 8) == 8
    assert group_size("%x), replica_groups={{0,1,2},{3,4,5}}, to_apply=%add", 6) == 3
    assert group_size("%x), replica_groups={}, to_apply=%add", 8) == 8
    gb = 1e9
    assert wire_bytes("all-gather", gb, 4) == 0.75 * gb
    assert wire_bytes("reduce-scatter", gb, 4) == 3 * gb  # the result is one shard of four
    assert wire_bytes("all-reduce", gb, 4) == 1.5 * gb
    assert wire_bytes("all-to-all", gb, 4) == 0.75 * gb
    assert wire_bytes("collective-permute", gb, 4) == gb
    assert wire_bytes("all-reduce", gb, 1) == 0.0


def test_time_estimate_is_compiled_flops_and_collective_traffic():
    hw = plan.Hardware(peak_flops=1e15, utilisation=0.5, link_bytes_per_s=100e9)
    row = plan.PlanRow("f", 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, hlo_flops=1e15,
                       collectives_gb={"all-gather": 999.0}, wire_gb={"all-gather": 150.0,
                                                                     "all-reduce": 250.0},
                       model_flops=123e15, compile_s=0.0)
    assert row.compute_s(hw) == pytest.approx(2.0)  # 1e15 / (0.5 x 1e15): not model FLOPs
    assert row.comm_s(hw) == pytest.approx(4.0)  # 400 GB sent, every kind, at 100 GB/s
    table = plan.format_rows([row], 8, 60.0, hw)
    cells = [c.strip() for c in table.splitlines()[2].split("|")[1:-1]]
    head = [c.strip() for c in table.splitlines()[0].split("|")[1:-1]]
    got = dict(zip(head, cells, strict=True))
    assert (got["compute s"], got["comm s"], got["estimate s"], got["bound s"]) == (
        "2.00", "4.00", "4.00", "6.00")
    assert "0.5 x 1000 TFLOP/s" in hw.describe() and "100 GB/s" in hw.describe()


@needs_8
def test_sft_plan_compiles_the_real_step_on_sharded_abstract_state():
    cfg = sft_config.get_config("toy")
    with cfg.unlocked():
        cfg.mesh.data, cfg.mesh.fsdp = 1, 8
        cfg.data.global_batch = 16
    sp = sft_stage.planned(cfg, length=32)
    step, evaluation = sp.functions
    assert evaluation.name.startswith("SFT eval loss 16x32")
    row = plan.compile_plan(step, sp.matmul_params)
    # State = fp32 params + two Adam moments, split 8 ways (plus the small batch).
    n_all = sum(x.size for x in jax.tree.leaves(step.args[0]["params"]))
    expected = 3 * 4 * n_all / 8
    assert expected <= row.argument_gb * 1e9 <= 1.25 * expected
    assert row.temp_gb > 0 and row.hlo_flops > 0
    assert 0.5 < row.hlo_flops * 8 / row.model_flops < 3.0
    assert sum(row.wire_gb.values()) > 0  # FSDP gathers weights and reduces gradients
    assert "SFT step" in plan.format_rows([row], 8, 60.0)


@needs_8
def test_eval_forward_is_planned_and_micro_batching_lowers_its_peak():
    def eval_row(stage, micro):
        cfg = (sft_config if stage == "sft" else reward_config).get_config("toy")
        with cfg.unlocked():
            cfg.mesh.data, cfg.mesh.fsdp = 1, 8
            cfg.data.global_batch = 32
            cfg.train.eval_micro_batches = micro
        sp = (sft_stage if stage == "sft" else reward_stage).planned(cfg, length=256)
        (evaluation,) = [p for p in sp.functions if " eval " in p.name]
        assert f"{micro} micro-batches" in evaluation.name
        return plan.compile_plan(evaluation, sp.matmul_params)

    for stage in ("sft", "reward"):
        whole, parts = eval_row(stage, 1), eval_row(stage, 4)
        assert parts.temp_gb < 0.6 * whole.temp_gb, (stage, whole.temp_gb, parts.temp_gb)
        assert parts.hlo_flops == pytest.approx(whole.hlo_flops, rel=0.05)  # same work


def _tiny_batch(rows: int, length: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    batch = {k: rng.integers(0, 300, (rows, length)).astype(np.int32) for k in ("text", "audio")}
    for k in ("text_mask", "audio_mask", "continuous"):
        batch[k] = rng.random((rows, length)) < 0.5
    batch["attention_mask"] = np.ones((rows, length), bool)
    return batch


def test_sft_eval_in_micro_batches_sums_what_one_pass_sums():
    cfg = sft_config.get_config("toy")
    sums = {}
    for micro in (1, 4):
        with cfg.unlocked():
            cfg.mesh.data = 1
            cfg.data.global_batch = 8
            cfg.train.eval_micro_batches = micro
        run = trainer.setup(cfg, devices=jax.devices()[:1], abstract=False)
        ce, count = sft_stage.build_eval(cfg, run)(run.state["params"], run.rest,
                                                   _tiny_batch(8, 24))
        sums[micro] = {k: (float(ce[k]), float(count[k])) for k in ce}
    assert sums[1]["text"][1] > 0 and sums[1]["audio"][1] > 0
    for k in sums[1]:
        assert sums[4][k] == pytest.approx(sums[1][k], rel=1e-5), k
    with cfg.unlocked():
        cfg.train.eval_micro_batches = 3
    with pytest.raises(ValueError, match="config.train.eval_micro_batches=3"):
        sft_stage.build_eval(cfg, run)


def test_grpo_plan_reads_the_prompt_cap():
    cfg = grpo_config.get_config("toy")
    with cfg.unlocked():
        cfg.grpo.query_batch, cfg.grpo.group_size = 2, 4
        cfg.grpo.sampling.max_new_tokens = 8
    # padded as the sampler pads: bucket * 2**k columns
    for bucket, cap, columns in ((16, 16, 16), (16, 20, 32), (16, 64, 64), (20, 16, 20)):
        cfg.grpo.sampling.prompt_bucket, cfg.data.max_prompt_len = bucket, cap
        functions = grpo_models.planned(cfg).functions
        assert f"prompt {columns} + 8 steps" in functions[0].name
        assert functions[0].args[2].shape == (8, columns)  # the sampler's prompt tokens
        assert f"{8}x{columns + 8}" in functions[-1].name  # the update's rows
        assert functions[-1].args[1]["text"].shape == (8, columns + 8)


def test_grpo_refuses_a_prompt_over_the_cap(tmp_path):
    mc = trainer.model_config(grpo_config.get_config("toy").model)
    lines = [{"id": f"p{i}", "prompt_audio": list(range(n))} for i, n in enumerate((4, 9, 30))]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = grpo_config.get_config("toy")
    with cfg.unlocked():
        cfg.toy.enabled = False
        cfg.data.train_files = [str(path)]
    records, where = grpo_stage.prompt_records(cfg)
    lengths = [len(layout.record_prompt(r, mc)) for r in records]
    policy = KimiAudioPolicy(mc)
    grpo_stage.check_prompt_lengths(records, where, policy, max(lengths))  # at the cap: fine
    with pytest.raises(ValueError) as refused:
        grpo_stage.check_prompt_lengths(records, where, policy, lengths[1] - 1)
    message = str(refused.value)
    assert message.startswith(f"{path}:2: prompt 'p1' is {lengths[1]} tokens")
    assert f"config.data.max_prompt_len={lengths[1] - 1}" in message and "(2 of 3" in message


@pytest.mark.slow
def test_plan_cli_exits_1_over_budget():
    cmd = [sys.executable, str(ROOT / "launch/plan.py"), "--config",
           str(ROOT / "configs/sft.py") + ":toy", "--devices", "8", "--length", "32",
           "--budget_gb", "0.000001", "--config.data.global_batch=8", "--markdown"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "OVER" in out.stdout and "over budget: SFT step" in out.stdout
    # --markdown: the header line, then the table (a row for the step and one for eval).
    lines = out.stdout.splitlines()
    assert lines[0].startswith("sft: mesh") and "at 0.4 x 989 TFLOP/s" in lines[0]
    assert not any(line.lstrip().startswith("compiled ") for line in lines)
    rows = [line for line in lines if line.startswith("| SFT ")]
    assert [r.split(" |")[0] for r in rows] == ["| SFT step 8x32, accum 1",
                                               "| SFT eval loss 8x32, 1 micro-batches"]


@pytest.mark.slow
@needs_8
def test_grpo_plan_compiles_every_function_with_a_lora_policy():
    cfg = grpo_config.get_config("toy")
    with cfg.unlocked():
        cfg.grpo.query_batch, cfg.grpo.group_size = 2, 4
        cfg.grpo.sampling.max_new_tokens = 8
        cfg.grpo.lora.rank = 4
        cfg.data.max_prompt_len = 16
    sp = grpo_models.planned(cfg)
    rows = plan.run_plan(sp.functions, sp.matmul_params)
    assert [r.name.split()[0] for r in rows] == ["rollout", "old", "reference", "reward", "GRPO"]
    assert all(r.peak_gb > 0 for r in rows)
