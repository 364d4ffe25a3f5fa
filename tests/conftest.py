"""Test-wide setup: 8 fake CPU devices for sharding tests and no hub access; a speaking
tiny Qwen2.5-Omni checkpoint shared by the model and bench tests."""

import os

import pytest

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_configure(config):
    """One persistent compilation cache for the whole test session: the stage runs that
    compile the same programs again (GRPO runs, restored models) load them instead."""
    import tempfile

    import jax

    config.paras2s_jax_cache = tempfile.mkdtemp(prefix="paras2s_jax_cache_")
    jax.config.update("jax_compilation_cache_dir", config.paras2s_jax_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    import shutil

    shutil.rmtree(getattr(config, "paras2s_jax_cache", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def speaking_omni(tmp_path_factory):
    """(Orbax checkpoint, spk_dict.pt values) of a tiny random Qwen2.5-Omni that speaks,
    imported with launch/convert.py (tests/model/qwen_omni/speaking_checkpoint.py)."""
    from tests.model.qwen_omni.speaking_checkpoint import imported_speaking_omni

    return imported_speaking_omni(tmp_path_factory.mktemp("speaking_omni"))
