"""What a failed job tells its owner, by error code, in the owner's language.

The worker stores a code (and an English message for operators); the user
sees the localised sentence for that code.
"""

from django.utils.translation import gettext_lazy as _

JOB_ERROR_MESSAGES = {
    "photo_missing": _("The photo for this job was deleted or has expired. Please upload it again."),
    "pack_unavailable": _("This style is not available any more. Please choose another."),
    "out_of_memory": _("The server was too busy to finish this picture. Please try again."),
    "timed_out": _("This picture took too long to make. Please try again."),
    "worker_lost": _("The server stopped while making this picture. Please try again."),
    "generation_failed": _("Something went wrong while making this picture. Please try again."),
}


def job_error_message(code: str) -> str:
    return str(JOB_ERROR_MESSAGES.get(code, JOB_ERROR_MESSAGES["generation_failed"]))
