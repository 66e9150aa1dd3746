"""Content safety: a check on every generated picture before it is stored.

The check is pluggable (``AVATAR_SAFETY_CHECK``):

- ``off``: nothing is checked; the worker says so once, with a WARNING, when it starts.
- ``diffusers``: diffusers' ``StableDiffusionSafetyChecker`` (the CompVis CLIP-based checker)
  from the local folder ``AVATAR_SAFETY_CHECKER`` (its ``config.json`` and ``model.safetensors``,
  and the ``preprocessor_config.json`` of its CLIPImageProcessor). The operator brings the
  weights; nothing is downloaded. It is the default when ``AVATAR_SAFETY_CHECKER`` is set.
- the dotted path of an operator's own ``SafetyCheck`` subclass.

A picture the check calls unsafe is stored blurred (``blur``) and its row flagged
(``Output.flagged``, ``Output.flag_reason``): its owner sees that something happened, it can
never be shared, and it waits in the admin's moderation queue. The check is loaded once per
worker process, beside the engine and on its device, in the warm-up (worker/app.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string
from PIL import Image, ImageFilter

from worker.errors import EngineError

log = logging.getLogger(__name__)

OFF = "off"
DIFFUSERS = "diffusers"
# The blur's radius as a share of the picture's longer side: 512 px → a radius of 32 px, which
# leaves colours and nothing recognisable.
BLUR_SHARE = 1 / 16
PREPROCESSOR_CONFIG = "preprocessor_config.json"


class SafetyCheck:
    """A check on generated pictures. Subclass it, name it in AVATAR_SAFETY_CHECK, and:

    - ``check(images)`` answers, for each picture, True if it is unsafe (it is then stored
      blurred and flagged with ``reason``);
    - ``load(device, dtype)`` builds it once per worker process (the engine's device and
      dtype, for a check that runs a model); the default calls the class with no arguments.
    """

    name = "custom"
    reason = "nsfw"  # stored in Output.flag_reason for the pictures this check flags

    @classmethod
    def load(cls, device: str, dtype: Any) -> SafetyCheck:
        return cls()

    def check(self, images: Sequence[Image.Image]) -> list[bool]:
        raise NotImplementedError


class NoCheck(SafetyCheck):
    """AVATAR_SAFETY_CHECK=off: every picture passes."""

    name = OFF

    def check(self, images: Sequence[Image.Image]) -> list[bool]:
        return [False] * len(images)


def preprocessor_folder(folder: Path) -> Path:
    """Where the checker's CLIPImageProcessor config is: beside the weights (the CompVis repository's
    layout), or in a Stable Diffusion folder's `feature_extractor/` next to its `safety_checker/`."""
    if (folder / PREPROCESSOR_CONFIG).is_file():
        return folder
    sibling = folder.parent / "feature_extractor"
    if (sibling / PREPROCESSOR_CONFIG).is_file():
        return sibling
    raise EngineError(f"AVATAR_SAFETY_CHECKER {folder} has no {PREPROCESSOR_CONFIG} (the safety checker's "
                      "CLIPImageProcessor config; see README, 'Content safety and moderation')")


def check_folder(folder: Path) -> None:
    """The cheap checks on AVATAR_SAFETY_CHECKER, made before anything is loaded."""
    if not folder.is_dir():
        raise EngineError(f"AVATAR_SAFETY_CHECKER {folder} is not a folder (it should hold the diffusers safety "
                          "checker's config.json and model.safetensors; see README, 'Content safety and moderation')")
    if not (folder / "config.json").is_file():
        raise EngineError(f"AVATAR_SAFETY_CHECKER {folder} has no config.json")
    if not any(folder.glob("*.safetensors")):
        raise EngineError(f"AVATAR_SAFETY_CHECKER {folder} has no .safetensors weights (pickle-only weights "
                          "are not loaded)")
    preprocessor_folder(folder)


class DiffusersSafetyCheck(SafetyCheck):
    """diffusers' StableDiffusionSafetyChecker, on the engine's device, from a local folder."""

    name = DIFFUSERS
    reason = "nsfw"

    def __init__(self, model: Any, processor: Any, device: str, dtype: Any) -> None:
        self.model, self.processor, self.device, self.dtype = model, processor, device, dtype

    @classmethod
    def load(cls, device: str, dtype: Any) -> SafetyCheck:
        return cls.from_folder(Path(settings.AVATAR_SAFETY_CHECKER), device, dtype)

    @classmethod
    def from_folder(cls, folder: Path, device: str, dtype: Any) -> DiffusersSafetyCheck:
        check_folder(folder)
        # Imported here: a worker with the check off never pays for them.
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from diffusers.utils import logging as diffusers_logging
        from transformers import CLIPImageProcessor

        model: Any
        try:
            model = StableDiffusionSafetyChecker.from_pretrained(str(folder), local_files_only=True,
                                                                 use_safetensors=True)
            processor = CLIPImageProcessor.from_pretrained(str(preprocessor_folder(folder)), local_files_only=True)
        except Exception as e:
            raise EngineError(f"could not load the safety checker from AVATAR_SAFETY_CHECKER {folder}: {e}") from e
        model.to(device=device, dtype=dtype).eval()
        # Its forward() logs that "a black image will be returned": here it never is (see check()).
        diffusers_logging.get_logger(StableDiffusionSafetyChecker.__module__).setLevel(logging.ERROR)
        log.info("content safety check: diffusers safety checker from %s on %s", folder, device)
        return cls(model, processor, device, dtype)

    def check(self, images: Sequence[Image.Image]) -> list[bool]:
        import numpy as np
        import torch

        if not images:
            return []
        inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        clip_input = inputs.pixel_values.to(device=self.device, dtype=self.dtype)
        # The checker blacks out the unsafe ones among `images` in place: give it stand-ins, and
        # blur the real pictures ourselves.
        stand_ins = [np.zeros((1, 1, 3)) for _ in images]
        with torch.inference_mode():
            _, unsafe = self.model(clip_input=clip_input, images=stand_ins)
        return [bool(flag) for flag in unsafe]


def check_class(name: str) -> type[SafetyCheck]:
    """The class AVATAR_SAFETY_CHECK names."""
    if name == OFF:
        return NoCheck
    if name == DIFFUSERS:
        return DiffusersSafetyCheck
    try:
        found = import_string(name)
    except ImportError as e:
        raise EngineError(f"AVATAR_SAFETY_CHECK {name} cannot be imported: {e}") from e
    if not (isinstance(found, type) and issubclass(found, SafetyCheck)):
        raise EngineError(f"AVATAR_SAFETY_CHECK {name} is not a subclass of worker.safety.SafetyCheck")
    return found


def check_configuration() -> None:
    """At worker start, in the main process: the cheap checks (an EngineError says what is wrong), and
    the one warning when the check is off."""
    cls = check_class(settings.AVATAR_SAFETY_CHECK)
    if cls is NoCheck:
        log.warning("the content safety check is off (AVATAR_SAFETY_CHECK=off): generated pictures are stored "
                    "unchecked. Set AVATAR_SAFETY_CHECKER to a folder holding the diffusers safety checker's "
                    "weights to check them (README, 'Content safety and moderation')")
    elif cls is DiffusersSafetyCheck:
        check_folder(Path(settings.AVATAR_SAFETY_CHECKER))


_check: SafetyCheck | None = None


def load_safety_check(device: str, dtype: Any) -> SafetyCheck:
    """Build the configured check once for this process, on the engine's device and dtype."""
    global _check
    if _check is None:
        _check = check_class(settings.AVATAR_SAFETY_CHECK).load(device, dtype)
    return _check


def get_safety_check() -> SafetyCheck:
    """The process's check: the one the warm-up loaded, or (outside a worker) built now on the engine's
    device and dtype as the settings choose them."""
    if _check is not None:
        return _check
    if settings.AVATAR_SAFETY_CHECK == OFF:
        return load_safety_check("cpu", None)  # no model: neither torch nor the engine is needed
    from worker.engine import pick_device, pick_dtype

    device = pick_device(settings.AVATAR_DEVICE)
    return load_safety_check(device, pick_dtype(device, settings.AVATAR_DTYPE))


def set_safety_check(check: SafetyCheck | None) -> None:
    """Replace the process's check (tests; None makes the next use build it from the settings again)."""
    global _check
    _check = check


def blur(image: Image.Image) -> Image.Image:
    """A heavy Gaussian blur: the picture's colours stay, so its owner sees what happened, nothing else."""
    radius = max(4.0, max(image.size) * BLUR_SHARE)
    return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))
