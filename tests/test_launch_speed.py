"""Every speed suite runs end to end at the minute size and writes its JSON record.

No timing is asserted (the machine is shared); the figures' structure and the
same-computation checks the suites print are.
"""

from __future__ import annotations

import json

import pytest

from launch.speed import registry
from launch.speed.__main__ import main

SUITES = ("convert", "decode", "forward", "grpo-step", "prefill", "speech", "train-step")


def test_registry_holds_every_suite_module():
    found = registry()
    assert tuple(found) == SUITES
    for module in found.values():
        assert callable(module.run) and callable(module.add_arguments)


def _run(suite, tmp_path, *extra):
    out = tmp_path / f"{suite}.json"
    main([suite, "--size", "minute", "--repeats", "1", "--out", str(out), *extra])
    record = json.loads(out.read_text())
    assert record["suite"] == suite
    machine = record["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["versions"]["jax"]
    assert machine["jax_devices"] and machine["allocator"] in ("tcmalloc", "system")
    return record["results"]


def test_prefill(tmp_path, capsys):
    results = _run("prefill", tmp_path, "--no-compile")
    assert results["ratio_fp32"] > 0 and results["flops"] > 0
    assert "transformers eager fp32" in results["timings"]
    assert set(results["timings_bf16_phase"]) == {"ours fp32 (jit)", "ours bf16 (jit)"}
    assert results["ratio_bf16"] > 0
    diff = float(capsys.readouterr().out.split("max |logit ours - transformers| = ")[1].split()[0])
    assert diff < 1e-4  # both sides compute the same logits


@pytest.mark.slow  # runs the suite end to end (~20 s)
def test_decode(tmp_path):
    results = _run("decode", tmp_path)
    assert results["greedy_agreement"] == 1.0  # same greedy tokens as transformers
    assert results["bandwidth_bytes_per_s"] > 0
    assert set(results["matmul_peak_flops_per_s"]) == {"fp32", "bf16"}
    assert results["ours trunk b1"]["roofline_ms"] > 0 and "audio branch b8" in results
    for name in ("ours trunk", "ours trunk bf16", "transformers generate"):
        row = results[f"{name} b8"]
        floor = max(row["roofline_ms"], row["matmul_peak_ms"])
        assert row["floor_fraction"] == pytest.approx(floor / row["step_ms"])
    # bf16 weights read half the bytes of fp32 ones.
    assert results["ours trunk bf16 b1"]["roofline_ms"] < results["ours trunk b1"]["roofline_ms"]
    assert 0.0 <= results["bf16_greedy_agreement_with_fp32"] <= 1.0


@pytest.mark.slow  # runs the suite end to end (~20 s)
def test_train_step(tmp_path):
    results = _run("train-step", tmp_path)
    assert results["step_flops"] > 0 and results["SFT step"]["peak_flops_per_s"] > 0
    variants = {"SFT step", "SFT step, remat", "SFT step, full logits",
                "SFT step, full logits, remat"}
    assert set(results) >= variants | {"mfu"}
    # The chunked loss and the one over full logits agree at the same weights and batch.
    assert results["first_loss_spread"] < 1e-4
    assert all(results[v]["first_loss"] > 0 for v in variants)
    assert results["profile"]["matmul"] > 0  # the jax.profiler breakdown found the dots


@pytest.mark.slow  # runs the suite end to end (~20 s)
def test_grpo_step(tmp_path):
    results = _run("grpo-step", tmp_path)
    assert results["group"] == 8
    for ours in ("ours", "ours_every_row"):  # with and without the shared prompt forward
        assert results[ours]["completions_per_s"] > 0
        assert len(results[ours]["phases_s"]) == len(results[ours]["samples_s"]) > 0
    if results["trl"] is not None:
        assert results["ratio"] > 0 and results["ratio_every_row"] > 0


def test_forward(tmp_path):
    assert _run("forward", tmp_path)["ratio_vs_transformers"] > 0


def test_convert(tmp_path):
    results = _run("convert", tmp_path)
    assert results["stream"]["model_bytes"] == results["peer"]["model_bytes"] > 0


def test_device_mode_needs_an_accelerator(tmp_path):
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("an accelerator is present")
    with pytest.raises(SystemExit):
        main(["forward", "--device", "--out", str(tmp_path / "x.json")])


@pytest.mark.slow  # compiles the tokenizer, the streamed DiT and the vocoder (~1 min)
def test_speech(tmp_path):
    results = _run("speech", tmp_path)
    assert results["codes"] == 25 and results["seconds_out"] == 25 * 4 * 480 / 24000
    for stage in ("tokenizer", "dit", "vocoder", "detokenizer"):
        assert results[f"{stage}_rtf"] > 0
    assert results["tokenizer_vs_pytorch"]["ratio"] > 0


def test_speech_tokenizer_row_vs_pytorch(capsys):
    """The speech suite's tokenizer comparison (its first phase) on its own, in seconds."""
    from launch.speed.suites.speech import tokenizer_vs_torch

    row = tokenizer_vs_torch("minute", 30.0, repeats=1)
    assert row["seconds"] == 2.0 and row["codes"] == 25
    assert row["ratio"] > 0 and row["ratio_cpu"] > 0
    assert row["ids_equal"] == row["codes"]  # both sides compute the same codes
    assert set(row["timings"]) == {"ours", "pytorch"}
    assert "tokenizer speed ratio ours/pytorch" in capsys.readouterr().out
