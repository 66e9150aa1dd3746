from __future__ import annotations

import uuid

from django.conf import settings
from django.db import connection, models


class Job(models.Model):
    """One request to turn a photo into `count` images with one style pack.

    The row is the source of truth: the web side creates it and enqueues only
    its id; the worker claims it with a conditional update and writes progress,
    outputs and the outcome here.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    photo = models.ForeignKey("photos.Photo", on_delete=models.SET_NULL, null=True, related_name="jobs")
    pack = models.ForeignKey("packs.StylePack", on_delete=models.PROTECT, related_name="jobs")
    count = models.PositiveSmallIntegerField(default=1)
    seed = models.BigIntegerField()
    # A quick preview with the pack's few-step sampler (its [fast] mode).
    preview = models.BooleanField(default=False)
    # The person's likeness model, applied beside the pack (with `likeness_weight`); a job asked
    # with one whose model has been deleted since fails rather than run without it.
    with_likeness = models.BooleanField(default=False)
    likeness = models.ForeignKey("training.TrainingRun", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="jobs")
    likeness_weight = models.FloatField(default=1.0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            # The fair order asks when each waiting user's last job started (fair_queue_sql).
            models.Index(fields=["user", "started_at"], name="jobs_job_user_started_idx"),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def queue_position(self) -> int | None:
        return queue_position(self.status, self.id)


def fair_queue_sql(family: str | None = None) -> tuple[str, list]:
    """A `WITH` clause whose last table, `ordered`, is every queued job (of `family`, or of every
    family) with its `place` in the order workers of its family take them; and its parameters.

    Round-robin across users, first come first served: each user with queued jobs stands in one
    line, from the moment their turn began (`turn_since`): when their oldest queued job was
    created, or when a job of theirs last started after that (having been served, they go to the
    back). Round 1 takes every user's oldest queued job in line order, round 2 their second, and so
    on. So a user's backlog of 20 never pushes anyone else's job behind all of it, and a job waits
    for at most one job of each user ahead of it per round. Users whose turns began together (served
    in one batch) go by whose oldest queued job is older. Lines are per model family: each family
    has its own workers. Columns of `ordered`: id, user_id, pack_id, preview, pictures, created_at,
    family, place (1 = the next job taken).

    One statement, cheap enough for the polled status read: the queued rows (index on status) and,
    per waiting user, one range read of the (user, started_at) index.
    """
    q = connection.ops.quote_name
    job = q(Job._meta.db_table)
    pack = q(Job._meta.get_field("pack").related_model._meta.db_table)
    params: list = [Job.Status.QUEUED.value]
    only_family = ""
    if family is not None:
        only_family = "AND p.base_family = %s"
        params.append(family)
    sql = f"""
        WITH queued AS (
            SELECT j.id, j.user_id, j.pack_id, j.preview, j.{q("count")} AS pictures, j.created_at,
                   p.base_family AS family,
                   ROW_NUMBER() OVER (PARTITION BY j.user_id, p.base_family ORDER BY j.created_at, j.id) AS nth,
                   MIN(j.created_at) OVER (PARTITION BY j.user_id, p.base_family) AS waiting_since
            FROM {job} j JOIN {pack} p ON p.id = j.pack_id
            WHERE j.status = %s {only_family}
        ),
        turns AS (
            SELECT w.user_id, w.family,
                   COALESCE((SELECT MAX(s.started_at) FROM {job} s JOIN {pack} sp ON sp.id = s.pack_id
                             WHERE s.user_id = w.user_id AND s.started_at > w.waiting_since
                               AND sp.base_family = w.family),
                            w.waiting_since) AS turn_since
            FROM (SELECT DISTINCT user_id, family, waiting_since FROM queued) w
        ),
        ordered AS (
            SELECT qj.id, qj.user_id, qj.pack_id, qj.preview, qj.pictures, qj.created_at, qj.family,
                   ROW_NUMBER() OVER (PARTITION BY qj.family
                                      ORDER BY qj.nth, t.turn_since, qj.waiting_since, qj.user_id) AS place
            FROM queued qj JOIN turns t ON t.user_id = qj.user_id AND t.family = qj.family
        )
    """
    return sql, params


def fair_queue(family: str, limit: int) -> list[tuple[uuid.UUID, int, bool, int]]:
    """The first `limit` queued jobs of `family` in fair order, as (id, pack_id, preview, pictures)."""
    sql, params = fair_queue_sql(family)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} SELECT id, pack_id, preview, pictures FROM ordered ORDER BY place LIMIT %s",
                       [*params, limit])
        rows = cursor.fetchall()
    to_uuid = Job._meta.pk.to_python
    return [(to_uuid(job_id), pack_id, bool(preview), pictures) for job_id, pack_id, preview, pictures in rows]


def queue_position(status: str, job_id: uuid.UUID | str) -> int | None:
    """1 for the next job a worker of its model family takes; None once the job left the queue.

    Its place in the fair order (fair_queue_sql), in one query.
    """
    if status != Job.Status.QUEUED:
        return None
    sql, params = fair_queue_sql()
    where, value = "id = %s", Job._meta.pk.get_db_prep_value(job_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} SELECT place FROM ordered WHERE {where} ORDER BY place LIMIT 1", [*params, value])
        row = cursor.fetchone()
    # Gone from the queue since its status was read: it is being taken right now.
    return int(row[0]) if row else 1


class OutputQuerySet(models.QuerySet["Output"]):
    def newest_jobs_best_first(self) -> OutputQuerySet:
        """Newest job first, and within a job the best picture first: the worker stores a job's
        pictures in rank order (index 0 is the most like the selfie), one row after another, so
        the rows' own creation times run from best to worst and cannot be the order."""
        return self.order_by("-job__created_at", "job_id", "index")


class Output(models.Model):
    """One generated image, stored under the owner's prefix."""

    objects = OutputQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()
    storage_key = models.CharField(max_length=255)
    thumbnail_key = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=40, default="image/webp")
    size_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # Held back by the content safety check (worker/safety.py): stored blurred, never shared, and
    # listed in the admin's moderation queue. The reason is the check's ("nsfw").
    flagged = models.BooleanField(default=False, db_index=True)
    flag_reason = models.CharField(max_length=40, blank=True)
    # How much the picture still looks like the person in the selfie (worker/faces.py): 1 - the
    # distance between the two faces' 128-d embeddings, so 0.4 and up is "the same person" by dlib's
    # threshold. None when no face was found in the picture (face_found False) or not measured (None).
    likeness = models.FloatField(null=True, blank=True)
    face_found = models.BooleanField(null=True, blank=True)
    # The change in skin tone against the selfie, in degrees of the Individual Typology Angle
    # (positive: lighter). None when either face could not be measured.
    skin_tone_shift = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "index"]
        # One output per position in a job: a repeated task updates, never duplicates.
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_output_per_job_index")]
        # A moderator: a staff user with this permission (the admin's moderation queue).
        permissions = [("moderate_output", "Can moderate pictures and reported share links")]

    def __str__(self) -> str:
        return f"output {self.id}"


class ModerationItem(Output):
    """The admin's moderation queue: outputs the content check flagged or someone reported."""

    class Meta:
        proxy = True
        verbose_name = "picture to moderate"
        verbose_name_plural = "moderation"
