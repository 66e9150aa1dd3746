"""Training runs in the admin: start one from a folder on the server, follow its progress, edit the
pack's English name and description while it trains (they go into its pack.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from avatarapp.packs.manifest import BASE_FAMILIES
from avatarapp.training.actions import MIXED_PRECISION, RunRequest, start_run
from avatarapp.training.inputs import TrainingInputError
from avatarapp.training.models import TrainingRun

DEFAULTS = RunRequest(images=Path("."), slug="")


class StartRunForm(forms.ModelForm):
    """The add form: what `manage.py train_pack` asks for. The run is created by `start_run`."""

    images = forms.CharField(max_length=500, help_text="A folder on the server with the pictures (and optional "
                                                       ".txt captions beside them).")
    rank = forms.IntegerField(initial=DEFAULTS.rank, min_value=1, max_value=256)
    steps = forms.IntegerField(initial=DEFAULTS.steps, min_value=1, max_value=100_000)
    learning_rate = forms.FloatField(initial=DEFAULTS.learning_rate, min_value=0)
    resolution = forms.IntegerField(initial=DEFAULTS.resolution, min_value=64, max_value=2048)
    seed = forms.IntegerField(initial=DEFAULTS.seed, min_value=0, max_value=2**32 - 1)
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size, min_value=1, max_value=64)
    chunk_steps_ = forms.IntegerField(label="Chunk steps", initial=DEFAULTS.chunk_steps, min_value=1)
    mixed_precision = forms.ChoiceField(choices=[(m, m) for m in MIXED_PRECISION], initial="auto",
                                        help_text="On a GPU only.")
    gradient_checkpointing = forms.BooleanField(initial=True, required=False, help_text="On a GPU only.")
    family = forms.ChoiceField(choices=[("", "that of the warm workers")] + [(f, f) for f in BASE_FAMILIES],
                               required=False)

    class Meta:
        model = TrainingRun
        fields = ["slug", "name", "description", "caption", "replace"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("name", "caption"):
            self.fields[name].required = False

    started: TrainingRun | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        request = RunRequest(
            images=Path(data["images"]), slug=data["slug"], caption=data.get("caption") or "",
            name=data.get("name") or "", description=data.get("description") or "", rank=data["rank"],
            steps=data["steps"], learning_rate=data["learning_rate"], resolution=data["resolution"],
            seed=data["seed"], batch_size=data["batch_size"], chunk_steps=data["chunk_steps_"],
            mixed_precision=data["mixed_precision"], gradient_checkpointing=data["gradient_checkpointing"],
            base_family=data.get("family") or "", replace=data.get("replace", False))
        try:
            # The whole start happens here, so bad input is a form error and leaves no row behind.
            self.started = start_run(request)
        except TrainingInputError as e:
            raise forms.ValidationError(str(e)) from None
        return data


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["slug", "status", "progress_text", "last_loss", "base_family", "created_at", "finished_at"]
    list_filter = ["status", "base_family"]
    search_fields = ["slug", "name"]
    readonly_fields = ["id", "slug", "status", "progress_text", "last_loss", "initial_loss", "final_loss",
                       "caption", "base_family", "source", "picture_count", "settings", "chunk_steps", "step",
                       "current_step", "total_steps", "checkpoint", "pack_version", "error", "attempts", "worker",
                       "heartbeat_at", "enqueued_at", "created_at", "started_at", "finished_at", "replace"]
    fields = ["name", "description", *readonly_fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TrainingRun]:
        # Style packs only: a person's likeness model is theirs (its owner sees and deletes it on
        # /likeness), not something to browse among the operator's packs.
        return super().get_queryset(request).filter(kind=TrainingRun.Kind.PACK)

    def get_form(self, request: HttpRequest, obj: TrainingRun | None = None, change: bool = False,
                 **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = StartRunForm
            kwargs["fields"] = None
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: TrainingRun | None = None) -> Any:
        if obj is None:
            return ["images", "slug", "caption", "name", "description", "rank", "steps", "learning_rate",
                    "resolution", "seed", "batch_size", "chunk_steps_", "mixed_precision", "gradient_checkpointing",
                    "family", "replace"]
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: TrainingRun | None = None) -> Any:
        if obj is None:
            return []
        # Once the pack is written, its names live in its pack.toml and the StylePack row (Style packs).
        return ["name", "description", *self.readonly_fields] if obj.finished else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: TrainingRun, form: forms.ModelForm, change: bool) -> None:
        if change:
            # Only the name and description are editable; the pack is written with the row's values.
            TrainingRun.objects.filter(id=obj.id).update(name=obj.name, description=obj.description)
            return
        started = form.started if isinstance(form, StartRunForm) else None
        assert started is not None  # StartRunForm.clean started it, or the form was invalid and nothing is saved
        obj.pk = started.pk
        obj.refresh_from_db()

    @admin.display(description="progress")
    def progress_text(self, run: TrainingRun) -> str:
        return f"step {max(run.step, run.current_step)} of {run.total_steps} ({run.progress:.0%})"

    @admin.display(description="last loss")
    def last_loss(self, run: TrainingRun) -> str:
        return f"{run.losses[-1]:.4f}" if run.losses else "–"

    @admin.display(description="pictures")
    def picture_count(self, run: TrainingRun) -> int:
        return len(run.samples)
