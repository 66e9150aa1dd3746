"""Fair queues: one user's backlog never pushes another user's job behind all of it.

Workers take jobs round-robin across users (jobs.models.fair_queue_sql), a job's
queue_position is its place in that order, a user may have AVATAR_MAX_ACTIVE_JOBS jobs
waiting or running at once, and the reaper gives lost messages back oldest first, at once
when a broker comes back empty. The claim order is checked on claim_batch itself with rows
made here; the whole story once more through HTTP and a real worker (last in this module,
so the worker never takes the messages the tests before it count).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from avatarapp.accounts.models import User
from avatarapp.actions import jobs as job_actions
from avatarapp.jobs.models import Job
from avatarapp.packs.models import StylePack
from tests.helpers import consenting_guest_with_photo, new_guest, purge_queue, queued_messages, wait_for_job, wait_until
from worker import reaper
from worker.reaper import reap_stale_jobs
from worker.run_job import claim_batch

A_MINUTE_AGO = timedelta(minutes=1)


def make_queued(owners: list, pack: str = "cinematic", **fields) -> list[Job]:
    """One queued job per owner ((user, photo) pairs), each created a second after the test's
    previous one, minutes ago (before anything a test then claims)."""
    made = []
    for user, photo in owners:
        n = Job.objects.count()
        job = Job.objects.create(user=user, photo=photo, pack=StylePack.objects.get(slug=pack), seed=n, **fields)
        Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(minutes=10) + timedelta(seconds=n))
        made.append(Job.objects.get(id=job.id))
    return made


@pytest.fixture
def empty_queues(packs):
    purge_queue()
    yield
    purge_queue()


@pytest.fixture
def two_users(empty_queues):
    return consenting_guest_with_photo(), consenting_guest_with_photo()


def owners_of(batch: list[Job], names: dict) -> list[str]:
    return [names[job.user_id] for job in batch]


# --- The order workers take jobs in ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("finish_each", [False, True], ids=["several workers", "one worker"])
def test_claims_go_round_robin_across_users(two_users, finish_each):
    a, b = two_users
    names = {a[0].id: "A", b[0].id: "B"}
    jobs = make_queued([a, a, a, b, a])
    claimed = []
    for _ in range(len(jobs)):
        # Whichever job a message names, the worker takes the one that is fair to run next.
        batch = claim_batch(str(jobs[0].id), "demo", max_pictures=1)
        claimed += owners_of(batch, names)
        if finish_each:  # one worker: each job is done before the next message is taken
            Job.objects.filter(id__in=[j.id for j in batch]).update(status=Job.Status.SUCCEEDED,
                                                                     finished_at=timezone.now())
    assert claimed == ["A", "B", "A", "A", "A"]
    assert claim_batch(str(jobs[0].id), "demo") == []  # nothing queued: the message takes nothing


@pytest.mark.django_db
def test_a_batch_takes_same_pack_companions_in_fair_order(two_users):
    a, b = two_users
    names = {a[0].id: "A", b[0].id: "B"}
    a1, a2, a3, b1 = make_queued([a, a, a, b])
    [a_avatar] = make_queued([a], pack="avatar")
    [b_preview] = make_queued([b], preview=True)
    # Fair order: A1 B1 A2 B(preview) A3 A(avatar). Four pictures of A1's pack and preview flag,
    # taken in that order: B's job joins the batch ahead of A's later ones.
    batch = claim_batch(str(a_avatar.id), "demo", max_pictures=4)
    assert [j.id for j in batch] == [a1.id, b1.id, a2.id, a3.id]
    assert owners_of(batch, names) == ["A", "B", "A", "A"]
    # A different pack or preview flag never shares a batch. A and B were served together, and
    # A's waiting job is the older one.
    assert [j.id for j in claim_batch(str(a1.id), "demo", max_pictures=4)] == [a_avatar.id]
    assert [j.id for j in claim_batch(str(a1.id), "demo", max_pictures=4)] == [b_preview.id]


@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_take_every_job_exactly_once(packs):
    """Four claimers race (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""
    from django.db import connection

    owners = [consenting_guest_with_photo() for _ in range(3)]
    jobs = make_queued(owners * 6)
    claims: list[list] = [[] for _ in range(4)]

    def claimer(mine: list) -> None:
        try:
            while batch := claim_batch(str(jobs[0].id), "demo", max_pictures=2):
                mine += [job.id for job in batch]
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(mine,)) for mine in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    taken = [job_id for mine in claims for job_id in mine]
    assert sorted(taken) == sorted(job.id for job in jobs)
    assert not Job.objects.filter(status=Job.Status.QUEUED).exists()
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}


# --- queue_position ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_job_behind_anothers_backlog_is_second_in_line_not_last(empty_queues):
    heavy = consenting_guest_with_photo()
    backlog = make_queued([heavy] * 20)  # rows, past the cap an API client would meet
    b = new_guest()
    created = b.post("/jobs", {"photo": b.upload_fixture().json()["id"], "pack": "cinematic"})
    assert created.status_code == 202, created.content
    assert created.json()["queue_position"] == 2
    assert b.get(f"/jobs/{created.json()['id']}").json()["queue_position"] == 2
    assert [job.queue_position() for job in backlog[:3]] == [1, 3, 4]
    assert backlog[-1].queue_position() == 21
    # Jobs for another model family's workers wait in another line.
    sd15 = StylePack.objects.create(slug="fair-sd15", version="1", base_family="sd15")
    other = Job.objects.create(user=heavy[0], photo=heavy[1], pack=sd15, seed=1)
    assert other.queue_position() == 1
    assert b.get(f"/jobs/{created.json()['id']}").json()["queue_position"] == 2


# --- The cap on a user's jobs --------------------------------------------------------------------


@pytest.mark.django_db
def test_the_cap_answers_429_too_many_jobs_with_retry_after_and_stores_nothing(empty_queues, settings):
    settings.AVATAR_MAX_ACTIVE_JOBS = 2
    api = new_guest()
    photo = api.upload_fixture().json()["id"]
    made = [api.post("/jobs", {"photo": photo, "pack": "avatar"}) for _ in range(2)]
    assert [r.status_code for r in made] == [202, 202]
    before = (Job.objects.count(), queued_messages())

    refused = api.post("/jobs", {"photo": photo, "pack": "avatar"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_jobs"
    assert refused.json()["error"]["message"]
    assert refused["Retry-After"].isdigit() and int(refused["Retry-After"]) > 0
    assert (Job.objects.count(), queued_messages()) == before

    # A running job counts too; the site's style form refuses the same way.
    Job.objects.filter(id=made[0].json()["id"]).update(status=Job.Status.RUNNING)
    site = Client()
    site.force_login(User.objects.get(id=api.get("/me").json()["id"]))
    page = site.post(f"/photos/{photo}/style", {"pack": "avatar"})
    assert page.status_code == 429 and page["Content-Type"].startswith("text/html")
    assert page["Retry-After"].isdigit()
    assert (Job.objects.count(), queued_messages()) == before

    # Someone else is not held back by it, and a job that ends frees its place.
    other = new_guest()
    assert other.post("/jobs", {"photo": other.upload_fixture().json()["id"], "pack": "avatar"}).status_code == 202
    assert api.post(f"/jobs/{made[1].json()['id']}/cancel").status_code == 202
    assert api.post("/jobs", {"photo": photo, "pack": "avatar"}).status_code == 202


# --- The reaper ------------------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    """The job ids the reaper sends, in order (the broker is not touched)."""
    calls: list[str] = []
    monkeypatch.setattr(job_actions.app, "send_task", lambda name, args, queue: calls.append(args[0]))
    return calls


def sent_a_while_ago(jobs: list[Job], ago: timedelta) -> None:
    Job.objects.filter(id__in=[j.id for j in jobs]).update(enqueued_at=timezone.now() - ago)


@pytest.mark.django_db
def test_the_reaper_resends_old_messages_oldest_first(two_users, settings, sent, monkeypatch):
    settings.AVATAR_REQUEUE_AFTER = 300
    # A broker that cannot count its queues: only the AVATAR_REQUEUE_AFTER rule is left.
    monkeypatch.setattr(reaper, "messages_waiting", lambda family: None)
    a, b = two_users
    jobs = make_queued([a, b, a, b, a])
    # Sent in a shuffled order, all long ago.
    for n, job in enumerate([jobs[3], jobs[0], jobs[4], jobs[1], jobs[2]]):
        sent_a_while_ago([job], timedelta(seconds=400 + n))
    assert reap_stale_jobs()["resent"] == 5
    assert sent == [str(job.id) for job in jobs]


@pytest.mark.django_db
def test_a_broker_that_came_back_empty_gets_its_messages_at_once_oldest_first(two_users, settings, sent):
    settings.AVATAR_REQUEUE_AFTER = 300
    a, b = two_users
    jobs = make_queued([b, a, a])
    # Sent a minute ago (long before AVATAR_REQUEUE_AFTER), and the queue is empty: lost.
    sent_a_while_ago(jobs, A_MINUTE_AGO)
    assert queued_messages() == 0
    assert reap_stale_jobs()["resent"] == 3
    assert sent == [str(job.id) for job in jobs]
    # Re-sent just now: nothing again until they could be lost once more.
    assert reap_stale_jobs()["resent"] == 0


@pytest.mark.django_db
def test_messages_still_in_the_queue_are_not_sent_again(two_users, settings, monkeypatch):
    settings.AVATAR_REQUEUE_AFTER = 300
    a, b = two_users
    jobs = make_queued([a, b, a])
    calls: list[str] = []

    def reap_with_messages_for(in_queue: list[Job]) -> int:
        purge_queue("demo")
        for job in in_queue:
            job_actions.enqueue(job)  # really sent
        sent_a_while_ago(jobs, A_MINUTE_AGO)
        with monkeypatch.context() as patch:
            patch.setattr(job_actions.app, "send_task", lambda name, args, queue: calls.append(args[0]))
            return reap_stale_jobs()["resent"]

    assert reap_with_messages_for(jobs) == 0 and calls == []
    # One message lost (say, taken by a worker that died before it claimed): one is re-sent, for the oldest job.
    assert reap_with_messages_for(jobs[1:]) == 1
    assert calls == [str(jobs[0].id)]


@pytest.mark.django_db
def test_jobs_that_lost_their_worker_go_back_oldest_first(two_users, settings, sent):
    settings.AVATAR_HEARTBEAT_TIMEOUT, settings.AVATAR_MAX_ATTEMPTS = 60, 3
    a, b = two_users
    jobs = make_queued([a, b, a])
    long_ago = timezone.now() - timedelta(minutes=10)
    for job in reversed(jobs):
        Job.objects.filter(id=job.id).update(status=Job.Status.RUNNING, attempts=1, heartbeat_at=long_ago,
                                             enqueued_at=timezone.now())
    assert reap_stale_jobs()["requeued"] == 3
    assert sent == [str(job.id) for job in jobs]


# --- Through HTTP and a real worker (last: the worker takes every message from here on) ------------


def wait_until_held(api, job_id: str) -> None:
    wait_until(lambda: api.get(f"/jobs/{job_id}").json()["progress"] > 0, 90,
               f"job {job_id} to finish its first denoising step")


@pytest.mark.django_db(transaction=True)
def test_one_users_backlog_does_not_hold_back_another_users_job(worker, packs, settings):
    settings.AVATAR_MAX_ACTIVE_JOBS = 6
    a, b = new_guest(), new_guest()
    a_photo, b_photo = a.upload_fixture().json()["id"], b.upload_fixture().json()["id"]

    def create(api, photo) -> dict:
        response = api.post("/jobs", {"photo": photo, "pack": "avatar"})
        assert response.status_code == 202, response.content
        return response.json()

    with worker.hold_jobs():
        first = create(a, a_photo)
        wait_until_held(a, first["id"])  # the worker is busy with A's first job
        backlog = [create(a, a_photo) for _ in range(5)]
        refused = a.post("/jobs", {"photo": a_photo, "pack": "avatar"})  # six waiting or running: the cap
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_jobs"
        assert refused["Retry-After"].isdigit()
        late = create(b, b_photo)
        assert late["queue_position"] <= 2
        a_places = [a.get(f"/jobs/{job['id']}").json()["queue_position"] for job in backlog]
        assert sum(place > late["queue_position"] for place in a_places) >= 4

    for api, job in [(a, first), *((a, job) for job in backlog), (b, late)]:
        assert wait_for_job(api, job["id"], timeout=180)[0]["status"] == "succeeded"

    rows = {str(job.id): job for job in Job.objects.filter(id__in=[first["id"], late["id"]] +
                                                           [job["id"] for job in backlog])}
    b_job, waited = rows[late["id"]], [rows[job["id"]] for job in backlog]
    # B's job started no later than all but (at most) one of A's jobs that waited with it, and was
    # done before most of A's jobs: a first-come-first-served queue would run it last.
    assert sum(job.started_at < b_job.started_at for job in waited) <= 1
    assert sum(job.finished_at > b_job.finished_at for job in [rows[first["id"]], *waited]) >= 4
