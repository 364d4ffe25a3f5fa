"""A stage registers its own entry point; unknown stages are named in the error."""

import pytest

from paras2s_jax.train import stages


def test_register_and_get():
    @stages.register("unit_test_stage")
    def run(cfg):
        return {"ran": 1.0}

    assert stages.get("unit_test_stage")(None) == {"ran": 1.0}
    assert stages.get("sft").__name__ == "run_sft"  # imported on demand


def test_unknown_stage_lists_known_ones():
    with pytest.raises(KeyError, match="config.stage='nope' is not a registered stage"):
        stages.get("nope")
