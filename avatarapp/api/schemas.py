"""Request and response shapes of the v1 API; the OpenAPI schema is built from these.

What comes in is read as strictly as the schema says, so a value the schema calls invalid is a
400 and never quietly becomes a valid one (schemathesis's negative_data_rejection): a JSON integer
is 3 (or 3.0, which JSON Schema counts as an integer), never "3" or true; a boolean is true or
false, never "true" or 1; an id is a UUID in its usual 8-4-4-4-12 form, never braced, an URN or
without its dashes. Request bodies are plain pydantic models, not ninja's Schema, which reads
attributes off any value and so took a body of `-47045` or `[]` for a ShareIn with no fields.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from ninja import Schema
from pydantic import BaseModel, BeforeValidator, Field, StrictBool
from pydantic_core import PydanticCustomError

UUID_FORM = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def json_integer(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def uuid_form(value: object) -> object:
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str) or not UUID_FORM.fullmatch(value):
        raise PydanticCustomError("uuid_parsing", "Input should be a valid UUID")
    return value


Integer = Annotated[int, BeforeValidator(json_integer)]
Id = Annotated[UUID, BeforeValidator(uuid_form)]  # also for ids in paths (views_*.py)


class Input(BaseModel):
    """A request body: a JSON object, read strictly (module docstring)."""


class UserOut(Schema):
    id: UUID
    is_guest: bool


class TokenOut(Schema):
    token: str
    user: UserOut


class CredentialsIn(Input):
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=20)
    password: str = Field(max_length=200)


class ConsentOut(Schema):
    version: int
    text: str


class ConsentIn(Input):
    version: Integer
    adult: StrictBool


class LikenessConsentIn(Input):
    version: Integer


class LikenessIn(Input):
    photos: list[Id] = Field(max_length=200)


class LikenessReportOut(Schema):
    """Likeness to the selfies (1 - dlib's face distance; 0.4 and up reads as the same person) of
    pictures made from the same photo and seeds without and with the model; null where no face was found."""

    pictures: int = 0
    without_model: float | None = None
    with_model: float | None = None
    faces_found_without: int = 0
    faces_found_with: int = 0
    note: str = ""


class LikenessOut(Schema):
    id: UUID
    status: str
    progress: float
    step: int
    total_steps: int
    family: str
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    report: LikenessReportOut | None


class LikenessListOut(Schema):
    consent_version: int | None
    likeness_models: list[LikenessOut]


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


class BoxOut(Schema):
    x: int
    y: int
    width: int
    height: int


class FaceOut(Schema):
    box: BoxOut  # in the stored photo's pixels (the `url` image)
    chosen: bool  # the face the portrait is made of: the largest


class PhotoOut(Schema):
    id: UUID
    url: str
    width: int
    height: int
    expires_at: datetime
    faces: list[FaceOut]
    crop: BoxOut  # the part of the photo a square portrait is made from


class JobIn(Input):
    photo: Id
    pack: str = Field(max_length=50)
    count: Integer = Field(default=1, ge=1, le=4)
    # Bounds before the validator, inside the union: elsewhere pydantic writes them as unknown keywords.
    seed: Annotated[int, Field(ge=0, le=2**32 - 1), BeforeValidator(json_integer)] | None = None
    preview: StrictBool = False
    # With the person's likeness model ("me") beside the pack.
    likeness: StrictBool = False


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
    # 1 - the face-embedding distance to the selfie's face (0.4 and up: the same person); null
    # when no face was found in the picture (face_found false) or it was not measured.
    likeness: float | None
    face_found: bool | None
    skin_tone_shift: float | None  # change in Individual Typology Angle, degrees; positive is lighter


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


class ShareIn(Input):
    expires_in: Annotated[int, Field(ge=60, le=365 * 24 * 3600), BeforeValidator(json_integer)] | None = None


class ShareOut(Schema):
    token: str
    url: str
    expires_at: datetime | None


class ApiErrorOut(ErrorOut):
    # Validation errors name their fields; a refused upload also says why (e.g. "too_small").
    fields: dict[str, str] | None = None
    reason: str | None = None


class ErrorBody(Schema):
    """Every error under /api/ (DESIGN.md): {"error": {"code", "message"}}, maybe fields or a reason."""

    error: ApiErrorOut
