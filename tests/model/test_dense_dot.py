"""Dense's 16-bit CPU path (float32 accumulation, one row padded to two) computes the
same product as the plain float32 one, for every leading shape."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from paras2s_jax.model.layers import Dense


@pytest.mark.parametrize("lead", [(), (1,), (1, 1), (3, 1), (2, 5)])
def test_bf16_dense_matches_float32(lead):
    dense = Dense((16,), (4, 8), ("embed", "heads", "head_dim"), use_bias=True,
                  param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    dense.bias[...] = jnp.arange(32, dtype=jnp.float32).reshape(4, 8) / 10
    x = np.random.default_rng(0).normal(size=(*lead, 16)).astype(np.float32)
    x16 = jnp.asarray(x, jnp.bfloat16)
    want = np.asarray(dense(x16.astype(jnp.float32)))
    y = dense(x16)
    assert y.dtype == jnp.bfloat16 and y.shape == (*lead, 4, 8)
    np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=2e-2, atol=2e-2)
    y32 = dense(x16, out_dtype=jnp.float32)
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y32), want, rtol=1e-2, atol=1e-2)
