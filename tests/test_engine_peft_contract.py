"""Pins the peft internals the engine writes for its fast switch (worker/lora_modes.set_adapter_state).

Each case sets two copies of a tiny LoRA model to the same adapters, one through the
engine's attribute writes and one through peft's public calls, and compares what peft
then reports and computes. When peft changes its internals, this fails before any
picture does; that is the time to raise the bound on peft in pyproject.toml.
"""

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from worker.lora_modes import set_adapter_state


@pytest.fixture
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two identical tiny models with LoRA adapters "a" and "b" on both linear layers (non-zero, unlike peft's init)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    for name in ("a", "b"):
        config = LoraConfig(r=2, lora_alpha=2, target_modules=["0", "2"], init_lora_weights=False)
        model = inject_adapter_in_model(config, model, adapter_name=name)
    return model, copy.deepcopy(model)


def layers(model: torch.nn.Module) -> list[LoraLayer]:
    found = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert len(found) == 2
    return found


def state(model: torch.nn.Module) -> list[dict]:
    """What peft reports about each layer: which adapters apply, whether any apply, what is merged."""
    return [{"active": list(layer.active_adapters), "disabled": layer.disable_adapters,
             "merged": list(layer.merged_adapters)} for layer in layers(model)]


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.linspace(-1, 1, 16).reshape(2, 8))


def test_activating_adapters_leaves_the_state_peft_set_adapter_and_enable_adapters_leave(models):
    ours, theirs = models
    for layer in layers(theirs):
        layer.enable_adapters(False)
    for layer in layers(ours):
        layer.enable_adapters(False)

    for layer in layers(ours):
        set_adapter_state(layer, ["a", "b"])
    for layer in layers(theirs):
        layer.set_adapter(["a", "b"])
        layer.enable_adapters(True)

    assert state(ours) == state(theirs) == [{"active": ["a", "b"], "disabled": False, "merged": []}] * 2
    assert torch.equal(outputs(ours), outputs(theirs))


def test_activating_no_adapter_leaves_the_state_peft_enable_adapters_false_leaves(models):
    ours, theirs = models
    plain = torch.nn.Sequential(*(layer.get_base_layer() if isinstance(layer, LoraLayer) else layer for layer in ours))
    base_outputs = outputs(plain)

    for layer in layers(ours):
        set_adapter_state(layer, [])
    for layer in layers(theirs):
        layer.enable_adapters(False)

    assert state(ours) == state(theirs)
    assert all(entry["disabled"] for entry in state(ours))
    assert torch.equal(outputs(ours), outputs(theirs))
    assert torch.equal(outputs(ours), base_outputs)


def test_switching_from_one_adapter_to_another_applies_only_the_new_one(models):
    ours, theirs = models
    for layer in layers(ours):
        set_adapter_state(layer, ["a"])
        set_adapter_state(layer, ["b"])
    for layer in layers(theirs):
        layer.set_adapter("b")

    assert state(ours) == state(theirs)
    assert torch.equal(outputs(ours), outputs(theirs))


def test_restoring_saved_weights_leaves_the_state_peft_unmerge_leaves(models):
    ours, theirs = models
    saved = [layer.get_base_layer().weight.detach().clone() for layer in layers(ours)]
    for model in models:
        for layer in layers(model):
            layer.set_adapter("a")
            layer.merge(adapter_names=["a"])
    assert all(entry["merged"] == ["a"] for entry in state(ours))

    for layer, weight in zip(layers(ours), saved, strict=True):
        layer.get_base_layer().weight.data.copy_(weight)
        set_adapter_state(layer, [], forget_merged=True)
    for layer in layers(theirs):
        layer.unmerge()
        layer.enable_adapters(False)

    assert state(ours) == state(theirs)
    assert not any(entry["merged"] for entry in state(ours))
    assert torch.allclose(outputs(ours), outputs(theirs), atol=1e-6)
    for ours_layer, theirs_layer in zip(layers(ours), layers(theirs), strict=True):
        assert torch.allclose(ours_layer.get_base_layer().weight, theirs_layer.get_base_layer().weight, atol=1e-6)
