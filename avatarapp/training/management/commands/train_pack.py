"""Train a style pack (a LoRA) on the workers' base model from a folder of pictures."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from avatarapp.packs.manifest import BASE_FAMILIES
from avatarapp.training.actions import MIXED_PRECISION, RunRequest, start_run
from avatarapp.training.inputs import TrainingInputError
from avatarapp.training.models import TrainingRun

POLL_EVERY = 0.5  # seconds between two looks at the run's row


class Command(BaseCommand):
    help = ("Train a style pack (a LoRA) from a folder of pictures on the workers' base model, in chunks on the "
            "`train` queue, and install it. Captions: a .txt beside each picture, else --caption.")

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = RunRequest(images=Path("."), slug="")
        parser.add_argument("--images", type=Path, required=True, help="The folder of pictures.")
        parser.add_argument("--slug", required=True, help="The new pack's slug (lower-case letters, digits, dashes).")
        parser.add_argument("--caption", default="",
                            help="Caption of pictures without a .txt; the pack's prompt is '{subject}, <caption>' "
                                 "(default: '<slug> style').")
        parser.add_argument("--name", default="", help="The pack's English name (default: from the slug).")
        parser.add_argument("--description", default="", help="The pack's English description.")
        parser.add_argument("--rank", type=int, default=defaults.rank, help="LoRA rank (default %(default)s).")
        parser.add_argument("--steps", type=int, default=defaults.steps, help="Training steps (default %(default)s).")
        parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                            help="AdamW learning rate (default %(default)s).")
        parser.add_argument("--resolution", type=int, default=defaults.resolution,
                            help="Training picture side in pixels, a multiple of 8 (default %(default)s).")
        parser.add_argument("--seed", type=int, default=defaults.seed,
                            help="Same seed, same pictures, same settings: the same LoRA (default %(default)s).")
        parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                            help="Pictures per step (default %(default)s).")
        parser.add_argument("--chunk-steps", type=int, default=defaults.chunk_steps,
                            help="Steps per task; generation jobs run between chunks (default %(default)s).")
        parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=defaults.mixed_precision,
                            help="On a GPU: the base weights' precision (auto: the engine's); ignored on a CPU.")
        parser.add_argument("--no-gradient-checkpointing", action="store_true",
                            help="On a GPU: keep activations (faster, more memory); ignored on a CPU.")
        parser.add_argument("--base-family", choices=BASE_FAMILIES, default="",
                            help="The model family to train for (default: that of the warm workers).")
        parser.add_argument("--replace", action="store_true", help="Replace an installed pack with this slug.")
        parser.add_argument("--no-wait", action="store_true", help="Queue the run and return at once.")

    def handle(self, *args: Any, **o: Any) -> None:
        request = RunRequest(
            images=o["images"], slug=o["slug"], caption=o["caption"], name=o["name"], description=o["description"],
            rank=o["rank"], steps=o["steps"], learning_rate=o["learning_rate"], resolution=o["resolution"],
            seed=o["seed"], batch_size=o["batch_size"], chunk_steps=o["chunk_steps"],
            mixed_precision=o["mixed_precision"], gradient_checkpointing=not o["no_gradient_checkpointing"],
            base_family=o["base_family"], replace=o["replace"])
        try:
            run = start_run(request)
        except TrainingInputError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"training run {run.id}: {len(run.samples)} pictures, {run.total_steps} steps in chunks "
                          f"of {run.chunk_steps}, for {run.base_family} models")
        if o["no_wait"]:
            self.stdout.write(f"queued; follow it in the admin (Training runs) or with the run id {run.id}")
            return
        run = self.follow(run)
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError(f"training failed: {run.error}")
        loss = f"; probe loss {run.initial_loss:.4f} -> {run.final_loss:.4f}" if run.final_loss is not None else ""
        self.stdout.write(self.style.SUCCESS(f"installed pack {run.slug} {run.pack_version}{loss}"))

    def follow(self, run: TrainingRun) -> TrainingRun:
        """A progress bar that follows the row until the run ends (Ctrl-C stops watching, not training)."""
        with tqdm(total=run.total_steps, unit="step", desc=run.slug, file=sys.stderr) as bar:
            while not run.finished:
                time.sleep(POLL_EVERY)
                run.refresh_from_db()
                bar.n = max(run.step, run.current_step)
                if run.losses:
                    bar.set_postfix(loss=f"{run.losses[-1]:.4f}", status=run.status, refresh=False)
                bar.refresh()
        return run
