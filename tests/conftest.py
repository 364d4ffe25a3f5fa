"""Test-wide setup: 8 fake CPU devices for sharding tests and no hub access."""

import os

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
