"""The jitted train step every stage shares: accumulate, guard, update.

A stage supplies
- `loss_fn(model, batch, rng) -> {term: (sum, denominator)}` (or that and a dict of
  scalar diagnostics, averaged over micro-batches and reported as metrics), and
- `count_fn(batch) -> {term: denominator}` over the *whole* batch (from masks only),
plus per-term weights. The objective is `sum_k w_k * sum_k / count_k`; dividing every
micro-batch by the global count makes gradient accumulation give the true token mean
of the global batch, not a mean of means.

State is a plain dict pytree {"params", "opt_state", "step", "rng"} (donated). The
model's other variables (`rest`: frozen weights, e.g. the base under LoRA adapters) are
the step's third argument, never closed over: a closed-over array would be baked into
the program as an unsharded constant on every device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

Terms = dict[str, tuple[jax.Array, jax.Array]]
LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array], Terms]
CountFn = Callable[[Mapping[str, jax.Array]], dict[str, jax.Array]]


def init_state(params: nnx.State, tx: optax.GradientTransformation, seed: int) -> dict:
    """A fresh train state (call inside jit with output shardings)."""
    return {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.PRNGKey(seed),  # raw uint32[2]: checkpoints as a plain array
    }


def state_shardings(params_shardings: nnx.State, abstract_state: dict,
                    tx: optax.GradientTransformation, replicated) -> dict:
    """Shardings of the whole state: optimizer moments follow their parameters."""
    opt = optax.tree_map_params(
        tx, lambda _, s: s, abstract_state["opt_state"], params_shardings,
        transform_non_params=lambda _: replicated,
    )
    return {"params": params_shardings, "opt_state": opt, "step": replicated,
            "rng": replicated}


def micro_batches(batch: Mapping[str, jax.Array], n: int,
                  group: int = 1) -> dict[str, jax.Array]:
    """[B, ...] -> [n, B/n, ...]; micro-batch i takes rows i, i+n, ... (stays sharded).

    group > 1: the unit is a block of `group` consecutive rows (a prompt's G replies),
    kept whole and in order: micro-batch i takes blocks i, i+n, ...
    """
    def split(x: jax.Array) -> jax.Array:
        if x.shape[0] % (n * group):
            unit = f"whole groups of {group} rows" if group > 1 else "rows"
            raise ValueError(f"batch of {x.shape[0]} rows does not split into "
                             f"{n} micro-batches of {unit} (optimizer.accum_steps)")
        blocks = x.reshape(x.shape[0] // (n * group), n, group, *x.shape[1:])
        return jnp.swapaxes(blocks, 0, 1).reshape(n, x.shape[0] // n, *x.shape[1:])
    return {k: split(v) for k, v in batch.items()}


def unmicro(x: jax.Array, group: int = 1) -> jax.Array:
    """Inverse of `micro_batches` for one array: [n, B/n, ...] -> [B, ...], rows in order."""
    n, rows = x.shape[:2]
    blocks = x.reshape(n, rows // group, group, *x.shape[2:])
    return jnp.swapaxes(blocks, 0, 1).reshape(n * rows, *x.shape[2:])


def build_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    count_fn: CountFn,
    weights: Mapping[str, float],
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    accum_steps: int = 1,
    group: int = 1,
) -> Callable[[dict, dict, nnx.State], tuple[dict, dict]]:
    """The pure step `(state, batch, rest) -> (state, metrics)`; jit it with donation.

    With `accum_steps` > 1 the batch is split by `micro_batches(batch, accum_steps, group)`.
    """
    weights = dict(weights)

    def objective(params, batch, rng, counts, rest):
        model = nnx.merge(graphdef, params, rest)
        terms = loss_fn(model, batch, rng)
        terms, extra = terms if isinstance(terms, tuple) else (terms, {})
        total = sum(w * terms[k][0] / jnp.maximum(counts[k], 1.0) for k, w in weights.items())
        sums = {k: v[0] for k, v in terms.items()}
        sums.update({f"aux/{k}": v / accum_steps for k, v in extra.items()})
        return total, sums

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(state: dict, batch: dict, rest: nnx.State) -> tuple[dict, dict]:
        params = state["params"]
        rng = jax.random.fold_in(state["rng"], state["step"])
        counts = {k: jnp.asarray(v, jnp.float32) for k, v in count_fn(batch).items()}
        if accum_steps == 1:
            (total, sums), grads = grad_fn(params, batch, rng, counts, rest)
        else:
            def body(carry, xs):
                g_acc, t_acc, s_acc = carry
                mb, i = xs
                (t, s), g = grad_fn(params, mb, jax.random.fold_in(rng, i), counts, rest)
                add = lambda a, b: a + b  # noqa: E731
                return (jax.tree.map(add, g_acc, g), t_acc + t,
                        jax.tree.map(add, s_acc, s)), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            first = jax.tree.map(lambda x: x[0], micro_batches(batch, accum_steps, group))
            sums0 = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), jax.eval_shape(
                lambda: grad_fn(params, first, rng, counts, rest)[0][1]))
            (grads, total, sums), _ = jax.lax.scan(
                body, (zeros, jnp.zeros((), jnp.float32), sums0),
                (micro_batches(batch, accum_steps, group), jnp.arange(accum_steps)))
            grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)

        grad_norm = optax.tree.norm(grads)
        ok = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        # A non-finite step must not poison the moments: feed zeros, then keep the old state.
        safe = jax.tree.map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), grads)
        updates, opt_state = tx.update(safe, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
        new_state = {
            "params": jax.tree.map(keep, new_params, params),
            "opt_state": jax.tree.map(keep, opt_state, state["opt_state"]),
            "step": state["step"] + 1,
            "rng": state["rng"],
        }
        metrics: dict[str, Any] = {
            "loss": total,
            "grad_norm": grad_norm,
            "param_norm": optax.tree.norm(params),
            "update_norm": jnp.where(ok, optax.tree.norm(updates), 0.0),
            "lr": schedule(state["step"]),
            "skipped": (~ok).astype(jnp.int32),
            "tokens": sum(counts.values()),
        }
        for k in counts:
            metrics[f"loss_{k}"] = sums[k] / jnp.maximum(counts[k], 1.0)
        metrics.update({k[4:]: v for k, v in sums.items() if k.startswith("aux/")})
        return new_state, metrics

    return step
