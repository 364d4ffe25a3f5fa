"""The model families the stages train: how each one's config, model and checkpoints are made.

A `ModelFamily` names a model config class, the model class built from it, its presets,
the config's JSON form (the Orbax `model_config` item, tagged with the family name) and
its HF-directory loader. The trainer picks one by `config.model.family`; a checkpoint's
family is read from its tag (untagged checkpoints are Kimi-Audio's, written before
there was a second family). How the stages *use* a model is `paras2s_jax.policy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from flax import nnx

from paras2s_jax.model import config as kimi_config
from paras2s_jax.model.kimi_audio import KimiAudio
from paras2s_jax.model.lora import LoRAConfig, attach_lora
from paras2s_jax.model.qwen_omni import model as omni

DEFAULT_FAMILY = "kimi_audio"  # the family of a stored config without a "family" tag


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One model family. `presets[name](**fields)` gives a config: `dtype`,
    `param_dtype`, `remat` and the family's own overrides (`config.model.overrides`)."""

    name: str
    config_class: type
    model_class: type
    presets: Mapping[str, Callable[..., Any]]
    to_json: Callable[[Any], dict[str, Any]]
    from_json: Callable[..., Any]  # (stored dict, **numerics) -> config
    load_hf: Callable[..., nnx.Module]  # (directory, mesh, **numerics) -> model
    describe: Callable[[Any], str]  # config -> its layers in a few words (plan headers)

    def preset(self, name: str, **fields: Any) -> Any:
        """The config of preset `name` with `fields` applied."""
        if name not in self.presets:
            raise ValueError(f"config.model.preset={name!r} is not a {self.name} preset; "
                             f"known: {', '.join(self.presets)}")
        return self.presets[name](**fields)

    def build(self, config: Any, seed: int = 0) -> nnx.Module:
        """A freshly initialised model of `config`."""
        return self.model_class(config, rngs=nnx.Rngs(seed))

    def abstract(self, config: Any, lora: LoRAConfig | None = None) -> nnx.Module:
        """The model of `config` (with `lora` adapters attached) as ShapeDtypeStructs,
        without allocating a parameter: what a restore or a compile-only plan fills."""

        def build() -> nnx.Module:
            model = self.build(config)
            if lora is not None:
                attach_lora(model, lora, rngs=nnx.Rngs(0))
            return model

        return nnx.eval_shape(build)


def _kimi_to_json(config: kimi_config.KimiAudioConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _kimi_from_json(data: dict[str, Any], **overrides: Any) -> kimi_config.KimiAudioConfig:
    fields = dict(data)
    fields["special"] = kimi_config.SpecialTokens(**fields["special"])
    return kimi_config.KimiAudioConfig(**{**fields, **overrides})


def _kimi_load_hf(directory: Any, mesh: Any = None, **overrides: Any) -> KimiAudio:
    from paras2s_jax.checkpoint.hf_io import import_hf

    return import_hf(directory, mesh, **overrides)


def _omni_preset(factory: Callable[[], omni.QwenOmniConfig]) -> Callable[..., Any]:
    def make(dtype: str = "float32", param_dtype: str = "float32", remat: bool = False,
             **parts: Any) -> omni.QwenOmniConfig:
        unknown = set(parts) - set(omni.PARTS)
        if unknown:
            raise ValueError(f"config.model.overrides: {sorted(unknown)} are not Qwen2.5-Omni "
                             f"parts; override fields per part, e.g. "
                             f"--config.model.overrides.talker.num_layers=2 "
                             f"(parts: {', '.join(omni.PARTS)})")
        config = omni.with_fields(factory(), dtype=dtype, param_dtype=param_dtype, remat=remat)
        return omni.QwenOmniConfig(**{
            name: dataclasses.replace(getattr(config, name), **dict(parts.get(name, {})))
            for name in omni.PARTS})

    return make


def _kimi_describe(config: kimi_config.KimiAudioConfig) -> str:
    return f"{config.num_layers}+{config.mimo_layers} layers"


def _omni_describe(config: omni.QwenOmniConfig) -> str:
    return (f"thinker {config.thinker.num_layers} + talker {config.talker.num_layers} + "
            f"audio encoder {config.audio.encoder_layers} layers")


KIMI_AUDIO = ModelFamily(
    name="kimi_audio", config_class=kimi_config.KimiAudioConfig, model_class=KimiAudio,
    presets={"tiny": kimi_config.tiny, "kimi_audio_7b": kimi_config.kimi_audio_7b},
    to_json=_kimi_to_json, from_json=_kimi_from_json, load_hf=_kimi_load_hf,
    describe=_kimi_describe)

QWEN25_OMNI = ModelFamily(
    name="qwen25_omni", config_class=omni.QwenOmniConfig, model_class=omni.QwenOmni,
    presets={"tiny": _omni_preset(omni.tiny), "toy": _omni_preset(omni.toy),
             "qwen25_omni_3b": _omni_preset(omni.qwen25_omni_3b),
             "qwen25_omni_7b": _omni_preset(omni.qwen25_omni_7b)},
    to_json=omni.config_to_json, from_json=omni.config_from_json, load_hf=omni.load_qwen_omni,
    describe=_omni_describe)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (KIMI_AUDIO, QWEN25_OMNI)}


def family_named(name: str) -> ModelFamily:
    """The family called `name` (`config.model.family`)."""
    if name not in FAMILIES:
        raise ValueError(f"config.model.family={name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of(config: Any) -> ModelFamily:
    """The family of a model config object."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_class):
            return family
    raise TypeError(f"{type(config).__name__} is not the config of a known model family "
                    f"({', '.join(FAMILIES)})")


def config_to_json(config: Any) -> dict[str, Any]:
    """The stored form of a model config: its family's JSON, tagged with the family."""
    family = family_of(config)
    return {"family": family.name, **family.to_json(config)}


def stored_family(data: dict[str, Any]) -> ModelFamily:
    """The family of a stored config (`config_to_json` output; untagged: Kimi-Audio)."""
    return family_named(data.get("family", DEFAULT_FAMILY))


def config_from_json(data: dict[str, Any], **numerics: Any) -> Any:
    """The config of `config_to_json` output (keys other than the config's own, e.g. the
    stored "lora", are ignored); `numerics`: dtype / param_dtype / remat."""
    family = stored_family(data)
    names = {f.name for f in dataclasses.fields(family.config_class)}
    return family.from_json({k: v for k, v in data.items() if k in names}, **numerics)
