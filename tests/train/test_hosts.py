"""Multi-process agreement helpers (the 2-process runs are in test_multihost.py)."""

import numpy as np
import pytest

from paras2s_jax.train.hosts import agreed, host_value, process_rows


def test_process_rows_are_equal_blocks_in_order():
    batch = {"text": np.arange(24).reshape(8, 3), "score": np.arange(8)[:, None]}
    parts = [process_rows(batch, p, 4) for p in range(4)]
    assert all(p["text"].shape == (2, 3) for p in parts)
    np.testing.assert_array_equal(np.concatenate([p["text"] for p in parts]), batch["text"])
    np.testing.assert_array_equal(parts[3]["score"][:, 0], [6, 7])
    with pytest.raises(ValueError, match="'text': 8 rows do not split over 3 processes"):
        process_rows(batch, 0, 3)


def test_single_process_values_pass_through():
    import jax.numpy as jnp

    assert agreed(True) is True
    np.testing.assert_array_equal(host_value(jnp.arange(3)), [0, 1, 2])
