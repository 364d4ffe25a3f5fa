"""Orbax checkpoints of a model of any family (`paras2s_jax.model.families`): parameters
+ the model config, restored sharded.

Layout of a model checkpoint directory (a composite Orbax checkpoint)::

    DIR/params/        the parameter tree (StandardSave), one array per parameter
    DIR/model_config/  the config as JSON, tagged with its family ("family": "kimi_audio")
    DIR/meta/          optional JSON record of how it was trained (`read_meta`)

Training checkpoints store the same two items next to the optimizer and data state,
so `restore_model` also reads a training step directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from paras2s_jax.model.families import config_from_json, config_to_json, family_of
from paras2s_jax.model.lora import LoRAConfig
from paras2s_jax.sharding import PARAM_RULES, Rules, state_shardings

PARAMS_ITEM = "params"
CONFIG_ITEM = "model_config"
META_ITEM = "meta"  # a small JSON record (stage, what the model was trained to hear)

__all__ = ["CONFIG_ITEM", "META_ITEM", "PARAMS_ITEM", "config_from_json", "config_to_json",
           "model_save_args", "read_meta", "read_model_config", "read_stored_config",
           "restore_model", "save_model"]


def model_save_args(model: nnx.Module, lora: LoRAConfig | None = None) -> dict[str, Any]:
    """The composite items (params, model_config) that describe `model` in a checkpoint.

    With `lora`, the adapters are saved with the base and rebuilt on restore.
    """
    config = config_to_json(model.config)
    if lora is not None:
        config["lora"] = dataclasses.asdict(lora)
    return {
        PARAMS_ITEM: ocp.args.StandardSave(nnx.to_pure_dict(nnx.state(model, nnx.Param))),
        CONFIG_ITEM: ocp.args.JsonSave(config),
    }


def save_model(directory: str | Path, model: nnx.Module, lora: LoRAConfig | None = None,
               meta: dict[str, Any] | None = None) -> None:
    """Write `model` as an Orbax checkpoint at `directory` (which must not exist), with
    `meta` as its JSON record when given."""
    args = model_save_args(model, lora)
    if meta is not None:
        args[META_ITEM] = ocp.args.JsonSave(dict(meta))
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(Path(directory).absolute(), ocp.args.Composite(**args))


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The JSON record of a model checkpoint or training step directory ({} if none)."""
    path = Path(directory).absolute()
    if not (path / META_ITEM).exists():
        return {}
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        args = ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()})
        return dict(checkpointer.restore(path, args)[META_ITEM])


def read_stored_config(directory: str | Path) -> dict[str, Any]:
    """The raw `model_config` JSON of a model checkpoint or training step directory."""
    path = Path(directory).absolute()
    if not (path / CONFIG_ITEM).exists():
        raise FileNotFoundError(f"{path}: no {CONFIG_ITEM}/ item; not a model checkpoint")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        args = ocp.args.Composite(**{CONFIG_ITEM: ocp.args.JsonRestore()})
        return dict(checkpointer.restore(path, args)[CONFIG_ITEM])


def read_model_config(directory: str | Path, **overrides: Any) -> Any:
    """The model config (of its family's config class) stored in a checkpoint directory."""
    return config_from_json(read_stored_config(directory), **overrides)


def restore_model(
    directory: str | Path,
    mesh: Mesh | None = None,
    rules: Rules = PARAM_RULES,
    **config_overrides: Any,
) -> nnx.Module:
    """Restore a model of the stored family, each array straight onto its shard of `mesh`
    (or one device).

    config_overrides: e.g. `param_dtype` to restore in another dtype, `dtype` for compute.
    """
    path = Path(directory).absolute()
    stored = read_stored_config(path)
    config = config_from_json(stored, **config_overrides)
    lora = LoRAConfig(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in stored["lora"].items()}) if "lora" in stored else None
    abstract = family_of(config).abstract(config, lora)
    graphdef, state = nnx.split(abstract)
    if mesh is not None:
        shardings = state_shardings(state, mesh, rules)
    else:
        device = SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, state)
    target = jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
        nnx.to_pure_dict(state), nnx.to_pure_dict(shardings),
    )
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(
            path, ocp.args.Composite(**{PARAMS_ITEM: ocp.args.StandardRestore(target)})
        )
    nnx.replace_by_pure_dict(state, restored[PARAMS_ITEM])
    return nnx.merge(graphdef, state)
