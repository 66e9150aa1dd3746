"""How a pack's LoRA reaches the warm pipeline: three modes with the same two verbs.

Each mode wraps a loaded pipeline and offers ``load_pack`` (read a pack's LoRA
files once) and ``activate`` (make one pack, or none, what the next run applies).
The engine picks one by name with ``make_lora_mode``:

- ``active``: every pack stays resident as unfused peft adapters, and a switch only
  changes which adapters each layer applies (well under a millisecond). The CPU default.
- ``fused``: as ``active``, but the active pack is merged into the base weights, so a
  step costs exactly what the base model's step costs. Merging is a few small matmuls
  per layer: instant on a GPU, where unfused LoRA kernels cost the most. The GPU default.
- ``hotswap``: for a torch.compile'd UNet, where changing which adapter a layer applies
  would recompile it. One adapter slot of fixed rank; a switch copies the pack's weights
  into the slot in place (diffusers' LoRA hotswap), which the compiled graph does not notice.

A person's likeness model (a LoRA of their face, worker/likeness.py) is a second adapter applied
beside the pack's with its own weight: ``load_likeness`` reads it, ``activate`` takes it along.
``active`` and ``fused`` apply both; ``hotswap``'s one slot cannot, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from peft.tuners.lora import LoraLayer

from avatarapp.packs.manifest import LoraFile
from worker.errors import EngineError

LORA_MODE_NAMES = ("active", "fused", "hotswap")


# A likeness model to apply: (its key, its weight).
Likeness = tuple[str, float]
LIKENESS_IN_COMPILE_MODE = ("compile mode (AVATAR_COMPILE, LoRA mode hotswap) holds one LoRA at a time, so a "
                            "likeness model cannot be applied beside a style pack; turn AVATAR_COMPILE off on "
                            "workers that run likeness jobs")


class LoraMode(Protocol):
    def load_pack(self, slug: str, folder: Path, loras: Sequence[LoraFile], fast_lora: LoraFile | None) -> None:
        """Read the pack's LoRA files (and its optional speed LoRA) once, replacing an older version."""

    def load_likeness(self, key: str, state: dict[str, torch.Tensor]) -> None:
        """Hold a likeness model's LoRA (diffusers format) as an adapter of its own."""

    def unload_likeness(self, key: str) -> None:
        """Forget a likeness model's adapter."""

    def activate(self, slug: str | None, fast: bool, likeness: Likeness | None = None) -> None:
        """Make the pack (with its speed LoRA when `fast`, and the likeness model at its weight), or no
        pack, what the next run applies."""


def set_adapter_state(layer: LoraLayer, active: Sequence[str], *, forget_merged: bool = False) -> None:
    """Leave `layer` applying exactly the adapters in `active` (none: its base layer alone).

    The state peft's public ``set_adapter`` and ``enable_adapters`` leave behind, minus their
    requires_grad bookkeeping, which inference never reads: two attribute writes per layer,
    so a pack switch over a whole UNet stays well under a millisecond. `forget_merged`: the
    caller has copied the layer's saved base weight back itself, so the layer must stop
    counting adapters as merged (peft's own ``unmerge`` would subtract them a second time).

    This is the one place that writes peft's private attributes; peft is bounded in
    pyproject.toml, and tests/test_engine_peft_contract.py pins this against the public calls.
    """
    if forget_merged:
        layer.merged_adapters.clear()
    if active:
        layer._active_adapter = list(active)
        layer._disable_adapters = False
    else:
        layer._disable_adapters = True


def lora_layers(pipe: Any) -> list[tuple[str, LoraLayer]]:
    """Every peft LoRA layer of the pipeline's UNet and text encoders, with a name unique in the pipeline."""
    components = {"unet": pipe.unet, "text_encoder": pipe.text_encoder,
                  "text_encoder_2": getattr(pipe, "text_encoder_2", None)}
    return [(f"{component}.{name}", module)
            for component, model in components.items() if model is not None
            for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def base_weight(layer: LoraLayer) -> torch.Tensor:
    weight = layer.get_base_layer().weight
    assert isinstance(weight, torch.Tensor)  # for the type checker: nn.Module attributes are untyped
    return weight


class ActiveAdapters:
    """Every pack's LoRA files stay loaded as named, unfused adapters; a switch points each layer at its pack's."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.layers: list[tuple[str, LoraLayer]] = []
        self.pack_adapters: dict[str, list[str]] = {}  # slug -> one adapter per LoRA file
        self.fast_adapter: dict[str, str] = {}  # slug -> its speed LoRA's adapter, for packs that have one
        self.likeness_adapters: dict[str, str] = {}  # likeness key -> its adapter

    def adapter_names(self, slug: str | None, fast: bool) -> list[str]:
        if slug is None:
            return []
        speed = [self.fast_adapter[slug]] if fast and slug in self.fast_adapter else []
        return self.pack_adapters.get(slug, []) + speed

    def load_pack(self, slug: str, folder: Path, loras: Sequence[LoraFile], fast_lora: LoraFile | None) -> None:
        old = self.adapter_names(slug, fast=True)
        if old:
            self.pipe.delete_adapters(old)
        self.pack_adapters.pop(slug, None)
        self.fast_adapter.pop(slug, None)
        files = [(f"{slug}__{i}" if i else slug, lora) for i, lora in enumerate(loras)]
        if fast_lora is not None:
            files.append((f"{slug}__fast", fast_lora))
        for name, lora in files:
            try:
                self.pipe.load_lora_weights(str(folder), weight_name=lora.file, adapter_name=name)
            except Exception as e:
                raise EngineError(f"pack {slug}: could not load {lora.file}: {e}") from e
        self.layers = lora_layers(self.pipe)
        for name, lora in files:
            for _, layer in self.layers:
                if name in layer.lora_A:
                    layer.set_scale(name, lora.weight)
        self.pack_adapters[slug] = [name for name, _ in files[:len(loras)]]
        if fast_lora is not None:
            self.fast_adapter[slug] = f"{slug}__fast"

    def load_likeness(self, key: str, state: dict[str, torch.Tensor]) -> None:
        self.unload_likeness(key)
        name = f"likeness__{key}"
        try:
            # A copy: diffusers' loader may pop the keys it has read.
            self.pipe.load_lora_weights(dict(state), adapter_name=name)
        except Exception as e:
            raise EngineError(f"likeness model {key}: could not load its LoRA: {e}") from e
        self.layers = lora_layers(self.pipe)
        self.likeness_adapters[key] = name

    def unload_likeness(self, key: str) -> None:
        name = self.likeness_adapters.pop(key, None)
        if name is not None:
            self.pipe.delete_adapters([name])
            self.layers = lora_layers(self.pipe)

    def layer_adapters(self, layer: LoraLayer, names: list[str], likeness: Likeness | None) -> list[str]:
        """The adapters `layer` applies: the pack's it has, and the likeness model's at its weight."""
        present = [name for name in names if name in layer.lora_A]
        if likeness is not None:
            key, weight = likeness
            name = self.likeness_adapters.get(key)
            if name is None:
                raise EngineError(f"likeness model {key} is not loaded")
            if name in layer.lora_A:
                layer.set_scale(name, weight)
                present.append(name)
        return present

    def activate(self, slug: str | None, fast: bool, likeness: Likeness | None = None) -> None:
        names = self.adapter_names(slug, fast)
        for _, layer in self.layers:
            set_adapter_state(layer, self.layer_adapters(layer, names, likeness))


class FusedAdapters(ActiveAdapters):
    """Adapters as in ActiveAdapters, with the active pack merged into the base weights."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(pipe)
        # Each layer's untouched base weight by module name, kept the first time a pack is
        # merged into it (~190 MB in bf16 for SD1.5).
        self.pristine: dict[str, torch.Tensor] = {}

    def load_pack(self, slug: str, folder: Path, loras: Sequence[LoraFile], fast_lora: LoraFile | None) -> None:
        self.restore_base_weights()
        super().load_pack(slug, folder, loras, fast_lora)

    def load_likeness(self, key: str, state: dict[str, torch.Tensor]) -> None:
        self.restore_base_weights()
        super().load_likeness(key, state)

    def unload_likeness(self, key: str) -> None:
        self.restore_base_weights()
        super().unload_likeness(key)

    def activate(self, slug: str | None, fast: bool, likeness: Likeness | None = None) -> None:
        self.restore_base_weights()
        names = self.adapter_names(slug, fast)
        for key, layer in self.layers:
            present = self.layer_adapters(layer, names, likeness)
            set_adapter_state(layer, present)
            if present:
                self.pristine.setdefault(key, base_weight(layer).detach().clone())
                layer.merge(adapter_names=present)

    def restore_base_weights(self) -> None:
        """Put the saved base weights back, from the copy rather than by subtracting the LoRA again:
        in bf16/fp16, merge-then-unmerge does not round-trip and repeated switches would slowly
        corrupt the base model."""
        for key, layer in self.layers:
            if layer.merged:
                base_weight(layer).data.copy_(self.pristine[key])
                set_adapter_state(layer, [], forget_merged=True)


def _is_lora_up(key: str) -> bool:
    return "lora_B" in key or "lora_up" in key


class HotswapSlot:
    """One adapter slot of fixed rank that each pack's weights are copied into, for a compiled UNet.

    It holds one LoRA file at a time, so a pack has one or none (a prompt-only pack runs with
    the slot at zero, as "no pack" does), and a preview cannot add a speed LoRA on top: more
    are refused with an EngineError.
    """

    ADAPTER = "slot"

    def __init__(self, pipe: Any, max_rank: int, compile_unet: bool) -> None:
        # Before any LoRA is loaded: the slot is sized for the largest rank a pack may have.
        pipe.enable_lora_hotswap(target_rank=max_rank)
        self.pipe = pipe
        self.max_rank = max_rank
        self.compile_unet = compile_unet
        self.states: dict[str, dict[str, torch.Tensor]] = {}  # slug -> its LoRA, ready to copy into the slot
        self.packs_with_speed_lora: set[str] = set()
        self.slot_loaded = False

    def load_pack(self, slug: str, folder: Path, loras: Sequence[LoraFile], fast_lora: LoraFile | None) -> None:
        if len(loras) > 1:
            raise EngineError(f"pack {slug} has {len(loras)} LoRA files; compile mode (hotswap) takes one "
                              "per pack at most, since its single adapter slot holds one LoRA at a time")
        self.states.pop(slug, None)
        self.packs_with_speed_lora.discard(slug)
        if fast_lora is not None:
            self.packs_with_speed_lora.add(slug)
        if not loras:
            return  # prompt-only: activate() gives it the empty slot
        lora = loras[0]
        try:
            state, _ = self.pipe.lora_state_dict(str(folder / lora.file))
        except Exception as e:
            raise EngineError(f"pack {slug}: could not load {lora.file}: {e}") from e
        rank = max((v.shape[0] for k, v in state.items() if "lora_A" in k or "lora_down" in k), default=0)
        if rank > self.max_rank:
            raise EngineError(f"pack {slug}: {lora.file} has rank {rank}, above the compile-mode slot's "
                              f"rank {self.max_rank} (AVATAR_MAX_LORA_RANK)")
        # The pack's weight is folded into lora_B, so the slot's scale never changes.
        self.states[slug] = {k: (v * lora.weight if _is_lora_up(k) else v) for k, v in state.items()}

    def load_likeness(self, key: str, state: dict[str, torch.Tensor]) -> None:
        raise EngineError(LIKENESS_IN_COMPILE_MODE)

    def unload_likeness(self, key: str) -> None:
        pass  # never loaded

    def activate(self, slug: str | None, fast: bool, likeness: Likeness | None = None) -> None:
        if likeness is not None:
            raise EngineError(LIKENESS_IN_COMPILE_MODE)
        if fast and slug in self.packs_with_speed_lora:
            raise EngineError(f"pack {slug}: its quick preview needs a speed LoRA on top of the pack's own, and "
                              "compile mode (hotswap) holds one LoRA at a time; turn AVATAR_COMPILE off for previews")
        if slug not in self.states:
            slug = None  # no pack, or a prompt-only one: the base model's own weights
        if slug is None and not self.slot_loaded:
            return  # no LoRA in the pipeline yet: it already is the base model
        if slug is None:
            # "No pack" is the slot holding zeros: the same graph, adding nothing.
            any_state = next(iter(self.states.values()))
            state = {k: (torch.zeros_like(v) if _is_lora_up(k) else v) for k, v in any_state.items()}
        else:
            state = self.states[slug]
        self.pipe.load_lora_weights(state, adapter_name=self.ADAPTER, hotswap=self.slot_loaded)
        if not self.slot_loaded:
            self.slot_loaded = True
            if self.compile_unet:
                # Compiled once, with the slot in place; later swaps change only its weights.
                self.pipe.unet = torch.compile(self.pipe.unet)


def resolve_lora_mode(setting: str, device: str, compile_unet: bool) -> str:
    """The mode to run: `setting`, or for "auto" the one that suits the device and compile choice."""
    if setting != "auto" and setting not in LORA_MODE_NAMES:
        raise EngineError(f"unknown LoRA mode {setting!r}; use auto or one of {', '.join(LORA_MODE_NAMES)}")
    if compile_unet:
        if setting not in ("auto", "hotswap"):
            raise EngineError(f"a compiled UNet needs LoRA mode hotswap (or auto), not {setting!r}: "
                              "changing which adapter a layer applies would recompile it")
        return "hotswap"
    if setting == "auto":
        return "fused" if device == "cuda" else "active"
    return setting


def make_lora_mode(name: str, pipe: Any, max_rank: int, compile_unet: bool) -> LoraMode:
    """The LoRA mode called `name` (see resolve_lora_mode), wrapped around a loaded pipeline."""
    if name == "active":
        return ActiveAdapters(pipe)
    if name == "fused":
        return FusedAdapters(pipe)
    if name == "hotswap":
        return HotswapSlot(pipe, max_rank, compile_unet)
    raise EngineError(f"unknown LoRA mode {name!r}; use one of {', '.join(LORA_MODE_NAMES)}")
