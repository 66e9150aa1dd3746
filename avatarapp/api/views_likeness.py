"""A person's likeness model: its consent, training, progress and deletion (/api/v1/likeness*)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from avatarapp.accounts.consent import likeness_consent_text, likeness_consent_version
from avatarapp.actions import likeness as likeness_actions
from avatarapp.api.auth import ApiRequest
from avatarapp.api.schemas import (
    ConsentOut,
    ErrorBody,
    Id,
    LikenessConsentIn,
    LikenessIn,
    LikenessListOut,
    LikenessOut,
)
from avatarapp.training.models import TrainingRun

router = Router(tags=["likeness"])


def likeness_json(run: TrainingRun) -> dict[str, Any]:
    failed = run.status == TrainingRun.Status.FAILED
    return {
        "id": run.id,
        "status": run.status,
        "progress": round(run.progress, 4),
        "step": max(run.step, run.current_step),
        "total_steps": run.total_steps,
        "family": run.base_family,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        # The worker's message is for operators; the person gets a plain sentence in the page.
        "error": "training_failed" if failed else None,
        "report": run.report or None,
    }


@router.get("/likeness/consent", auth=None, response=ConsentOut)
def get_likeness_consent(request: HttpRequest) -> dict[str, Any]:
    return {"version": likeness_consent_version(), "text": likeness_consent_text()}


@router.post("/me/likeness-consent", response={204: None, 400: ErrorBody})
def give_likeness_consent(request: ApiRequest, body: LikenessConsentIn) -> tuple[int, None]:
    likeness_actions.do_give_likeness_consent(request.auth, body.version)
    return 204, None


@router.delete("/me/likeness-consent", response={204: None})
def withdraw_likeness_consent(request: ApiRequest) -> tuple[int, None]:
    likeness_actions.do_withdraw_likeness_consent(request.auth)
    return 204, None


@router.post("/likeness", response={202: LikenessOut, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody,
                                    409: ErrorBody, 503: ErrorBody})
def start_likeness(request: ApiRequest, body: LikenessIn) -> tuple[int, dict[str, Any]]:
    run = likeness_actions.do_start_likeness(request.auth, list(body.photos))
    return 202, likeness_json(run)


@router.get("/likeness", response=LikenessListOut)
def list_likeness(request: ApiRequest) -> dict[str, Any]:
    runs = likeness_actions.likeness_runs(request.auth).order_by("-created_at")
    return {"consent_version": request.auth.likeness_consent_version,
            "likeness_models": [likeness_json(run) for run in runs]}


@router.get("/likeness/{run_id}", response={200: LikenessOut, 404: ErrorBody})
def get_likeness(request: ApiRequest, run_id: Id) -> dict[str, Any]:
    return likeness_json(likeness_actions.get_own_likeness(request.auth, run_id))


@router.delete("/likeness/{run_id}", response={204: None, 404: ErrorBody})
def delete_likeness(request: ApiRequest, run_id: Id) -> tuple[int, None]:
    likeness_actions.do_delete_likeness(request.auth, run_id)
    return 204, None
