from django.apps import AppConfig
from django.db.models.signals import post_delete


class TrainingConfig(AppConfig):
    name = "avatarapp.training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from avatarapp.training.models import TrainingRun, remove_run_folder_of

        # However a run goes (deleted by its owner, with an erased account, by the operator), its
        # folder goes with it: for a likeness model it holds latents of a person's face.
        post_delete.connect(remove_run_folder_of, sender=TrainingRun, dispatch_uid="training-run-folder")
