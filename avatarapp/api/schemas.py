"""Request and response shapes of the v1 API; the OpenAPI schema is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from ninja import Schema
from pydantic import Field


class UserOut(Schema):
    id: UUID
    is_guest: bool


class TokenOut(Schema):
    token: str
    user: UserOut


class CredentialsIn(Schema):
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=20)
    password: str = Field(max_length=200)


class ConsentOut(Schema):
    version: int
    text: str


class ConsentIn(Schema):
    version: int
    adult: bool


class QuotaOut(Schema):
    used: int
    limit: int


class MeOut(Schema):
    id: UUID
    is_guest: bool
    language: str
    consent_version: int | None
    quota: QuotaOut


class PackOut(Schema):
    slug: str
    name: str
    description: str
    preview_url: str | None
    fast_preview: bool


class PacksOut(Schema):
    packs: list[PackOut]


class PhotoOut(Schema):
    id: UUID
    url: str
    width: int
    height: int
    expires_at: datetime


class JobIn(Schema):
    photo: UUID
    pack: str = Field(max_length=50)
    count: int = Field(default=1, ge=1, le=4)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    preview: bool = False


class JobCreatedOut(Schema):
    id: UUID
    status: str
    queue_position: int | None


class OutputOut(Schema):
    id: UUID
    job: UUID
    url: str
    thumbnail_url: str
    width: int
    height: int
    content_type: str
    created_at: datetime
    flagged: bool  # held back by the content check: blurred, and it cannot be shared


class ErrorOut(Schema):
    code: str
    message: str


class JobOut(Schema):
    id: UUID
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress: float
    queue_position: int | None
    pack: str
    count: int
    seed: int
    preview: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorOut | None
    outputs: list[OutputOut]


class JobsOut(Schema):
    jobs: list[JobOut]


class OutputsOut(Schema):
    outputs: list[OutputOut]


class ShareIn(Schema):
    expires_in: int | None = Field(default=None, ge=60, le=365 * 24 * 3600)


class ShareOut(Schema):
    token: str
    url: str
    expires_at: datetime | None


class ErrorBody(Schema):
    error: ErrorOut
