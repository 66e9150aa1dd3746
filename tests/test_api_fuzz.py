"""schemathesis against the API's own schema (/api/v1/openapi.json), in-process, every check on.

The schema is loaded from the running app (WSGI, avatarapp.wsgi) and every operation is fuzzed
three ways, with all of schemathesis's checks:

- **as a consenting guest** (a bearer token), with real ids and values mixed into what is generated
  (the guest's photo, jobs, picture and share link, an offered pack, the current consent version, a
  real photo to upload, a registered account to sign in to), so the answers that carry data (201,
  202, the pictures themselves) are checked against the schema too, not only the refusals;
- **without credentials**, so every operation's 401 (or the private images' 404) is checked;
- **as a stateful workflow**: sequences of calls chained by the links schemathesis infers (a job's
  outputs, then their image, share, delete, then the image again), each scenario with a fresh guest,
  so `use_after_free`, `ensure_resource_availability` and `object_level_authorization` (a second
  guest replays the owner's reads and must get nothing) have something to look at.

Operations that end the identity they run as (DELETE /me, DELETE /me/consent, POST /auth/logout,
POST /auth/logout-everywhere) get a fresh guest for every case, so they never end the run's guest.

Bounded and deterministic: `derandomize=True` and a fixed number of examples per operation (the
same tree always runs the same cases; hypothesis also draws on constants it finds in the code, so a
change anywhere may change them). The case count and time are in README ("The JSON API").
"""

from __future__ import annotations

import itertools
import json
import re
import time
from contextlib import contextmanager
from urllib.parse import unquote_to_bytes

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.wfc.escalation import EscalatingAuthProvider

from avatarapp.wsgi import application
from tests.helpers import FIXTURES, purge_queue

# --- What runs --------------------------------------------------------------------------------

# How many cases hypothesis draws per operation and mode (the coverage phase adds its own, one per
# boundary and mutation the schema has), and how many stateful scenarios of how many steps.
MAX_EXAMPLES = 50
MAX_EXAMPLES_ANONYMOUS = 15
SCENARIOS = 60
SCENARIO_STEPS = 10
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # a request's time on 2 shared cores says nothing about the schema
    derandomize=True,  # the same cases on every run, so CI is deterministic
    database=None,
    # Slow and large are what an HTTP round trip per example is; the guest fixture is shared by one
    # operation's cases on purpose (the ones that would end it get a fresh guest each, see below).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)

load_all_checks()
# Every check schemathesis has (14 in 4.32): not_a_server_error, status_code_conformance,
# content_type_conformance, response_headers_conformance, response_schema_conformance,
# negative_data_rejection, positive_data_acceptance, missing_required_header, unsupported_method,
# allow_header_conformance, use_after_free, ensure_resource_availability, ignored_auth,
# object_level_authorization. The stateful ones act on the workflow test's sequences.
# Not on: `max_response_time`, which is no registered check but a limit in seconds, and timing
# assertions on 2 shared CI cores are noise (DESIGN.md: budgets are measured by benchmarks).
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]

# positive_data_acceptance expects schema-valid requests to get 2xx, 401, 403, 404, 409 or 429. Some
# of this API's rules cannot be said in JSON Schema (how strong a password is, what a file shows,
# which consent text is current, which packs a warm worker serves now), and text the request guard
# cannot read (NUL, a lone surrogate) is refused anywhere; JSON Schema strings allow both. So a 400
# (and for uploads 413 and 415) is accepted here, and `positive_refusals_name_their_rule` below then
# demands that such a refusal name one of those rules: a schema-valid field refused for its shape
# still fails.
POSITIVE_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
CONFIG = schemathesis.Config.from_dict({
    "generation": {"deterministic": True},
    "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
    "operations": [
        {"include-path": "/api/v1/photos", "include-method": "POST",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "413", "415"]}}},
    ],
})
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application, config=CONFIG)

# (operation, error code) -> the fields such a refusal may name.
BUSINESS_REFUSALS = {
    "POST /api/v1/auth/register": {"invalid_fields": {"email", "phone", "password"}},
    "POST /api/v1/auth/login": {"invalid_fields": {"email", "phone"}},
    "POST /api/v1/me/consent": {"consent_outdated": {"version"}, "adult_required": {"adult"}},
    "POST /api/v1/photos": {"invalid_image": set(), "unsupported_type": set(), "too_large": set(),
                            "no_face": set(), "face_too_small": set()},
    "POST /api/v1/jobs": {"unknown_pack": {"pack"}, "pack_unavailable": {"pack"}, "invalid_fields": {"likeness"}},
    "POST /api/v1/me/likeness-consent": {"consent_outdated": {"version"}},
    "POST /api/v1/likeness": {"too_few_photos": {"photos"}, "too_many_photos": {"photos"},
                              "not_one_face": {"photos"}},
    "POST /api/v1/outputs/{output_id}/shares": {"output_flagged": set()},
}


def positive_refusals_name_their_rule(ctx, response, case):
    """A schema-valid request refused with 400/413/415 must say which rule the schema could not state."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 413, 415):
        return None
    error = json.loads(response.content)["error"]
    if error["code"] == "invalid_input" and carries_unreadable_text(response.request):
        return None
    allowed = BUSINESS_REFUSALS.get(case.operation.label, {})
    assert error["code"] in allowed, f"a schema-valid request was refused: {error}"
    assert set(error.get("fields") or {}) <= allowed[error["code"]], f"a schema-valid field was refused: {error}"
    return None


def carries_unreadable_text(request) -> bool:
    """NUL, a lone surrogate or U+FFFD anywhere (URL, body, a JSON string), or bytes that are not
    UTF-8: what the request guard refuses before any view (avatarapp/lib/refusals.py)."""
    raw = request.body or b""
    raw = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    texts = []
    for part in (unquote_to_bytes(str(request.url)), raw):
        try:
            texts.append(part.decode("utf-8"))
        except UnicodeDecodeError:
            return True
    try:
        texts.extend(strings_in(json.loads(raw)))
    except ValueError:
        pass
    return any("\x00" in text or "\ufffd" in text or any("\ud800" <= c <= "\udfff" for c in text) for text in texts)


def strings_in(data) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [text for key, value in data.items() for text in (key, *strings_in(value))]
    if isinstance(data, list):
        return [text for item in data for text in strings_in(item)]
    return []


# --- Who asks ---------------------------------------------------------------------------------

# The current world's owner and peer tokens and real ids (see make_world); None: no credentials.
WORLD: dict = {}
DESTRUCTIVE = {"DELETE /api/v1/me", "DELETE /api/v1/me/consent", "POST /api/v1/auth/logout",
               "POST /api/v1/auth/logout-everywhere"}


class OwnerToken:
    """The guest every case runs as; a fresh guest for an operation that would end it."""

    def get(self, case, context):
        if not WORLD.get("owner"):
            return None
        if case.operation.label in DESTRUCTIVE:
            return consenting_guest()[1]
        return WORLD["owner"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
        # schemathesis counts the session cookie (the other way in) as a parameter of every operation,
        # and ensure_resource_availability judges only a request whose every parameter it set itself:
        # so the cookie is set too, naming no session (the bearer token decides).
        case.cookies = {**(case.cookies or {}), "sessionid": "none"}


class PeerToken(OwnerToken):
    """Another guest: object_level_authorization replays the owner's reads with this token."""

    def get(self, case, context):
        return WORLD.get("peer")


# Two identities that must not see each other's objects; every case runs as the owner. This is what
# schemathesis's `[auth.wfc]` config with `peers` builds (schemathesis.wfc.integration), built here
# in code because the tokens exist only inside each test's database transaction.
schema.auth.providers.append(
    EscalatingAuthProvider([OwnerToken(), PeerToken()], ["owner", "peer"], peers=("owner", "peer"), pinned="owner"))


# --- Real values among the generated ones -----------------------------------------------------
# Random ids only ever meet a 404. Half of the draws swap a generated value that is valid on its
# own for a real one, so a case stays exactly as valid or invalid as it was generated.

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_emails = itertools.count()


def is_uuid(value) -> bool:
    return isinstance(value, str) and UUID_RE.fullmatch(value) is not None


def is_text(value, max_length: int) -> bool:
    return isinstance(value, str) and len(value) <= max_length


def real_path_values(path_parameters: dict) -> dict:
    swaps = {}
    for name, key in (("photo_id", "photo"), ("job_id", "jobs"), ("output_id", "output")):
        if WORLD.get(key) and is_uuid(path_parameters.get(name)):
            swaps[name] = WORLD[key]
    if WORLD.get("share") and isinstance(path_parameters.get("token"), str):
        swaps["token"] = WORLD["share"]
    return swaps


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    swaps = real_path_values(path_parameters or {})
    if not swaps:
        return st.just(path_parameters)
    choices = {name: st.sampled_from(value) if isinstance(value, list) else st.just(value)
               for name, value in swaps.items()}
    return st.one_of(st.just(path_parameters), st.fixed_dictionaries(choices).map(
        lambda chosen: {**path_parameters, **chosen}))


def real_body(label: str, body: dict) -> dict:
    swaps: dict = {}
    if label == "POST /api/v1/jobs":
        if is_uuid(body.get("photo")) and WORLD.get("photo"):
            swaps["photo"] = WORLD["photo"]
        if is_text(body.get("pack"), 50):
            swaps["pack"] = "avatar"
        if body.get("preview") is True:
            swaps["preview"] = False  # not every pack has a fast mode
    elif label == "POST /api/v1/photos":
        image = getattr(body.get("image"), "data", body.get("image"))  # schemathesis wraps bytes in a Binary
        if isinstance(image, (bytes, str)) and len(image) > 0:
            swaps["image"] = PORTRAIT
    elif label == "POST /api/v1/me/consent":
        if WORLD.get("consent_version") and isinstance(body.get("version"), int) and body["version"] is not True \
                and body["version"] is not False:
            swaps["version"] = WORLD["consent_version"]
    elif label in ("POST /api/v1/auth/register", "POST /api/v1/auth/login"):
        account = WORLD.get("account")
        if account and is_text(body.get("email"), 254) and is_text(body.get("password"), 200):
            if label.endswith("register"):
                swaps = {"email": f"fuzz-{next(_emails)}@example.com", "password": "monsoon kites over Pune"}
            else:
                swaps = {"email": account[0], "password": account[1]}
            if "phone" in body and (body["phone"] is None or is_text(body["phone"], 20)):
                swaps["phone"] = None
    return swaps


@schema.hook
def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    swaps = real_body(context.operation.label, body)
    if not swaps:
        return st.just(body)
    return st.sampled_from([body, {**body, **swaps}])


PORTRAIT = (FIXTURES / "portrait.jpg").read_bytes()


# --- The world one run (or one stateful scenario) works in -----------------------------------


def consenting_guest():
    from avatarapp.accounts.consent import consent_version
    from avatarapp.accounts.models import ApiToken, User
    from avatarapp.actions.accounts import do_give_consent

    user = User.objects.create_guest()
    do_give_consent(user, consent_version(), adult=True)
    return user, ApiToken.issue(user)


def make_world() -> None:
    """A guest with a photo, a finished job with its picture and a share link, a queued job; a
    second guest; a registered account. Made through the actions, not HTTP (see keep_connection)."""
    from avatarapp.accounts.consent import consent_version
    from avatarapp.accounts.models import User
    from avatarapp.actions.shares import do_create_share
    from avatarapp.jobs.models import Job
    from avatarapp.packs.models import StylePack
    from tests.helpers import consenting_guest_with_photo, store_output_for

    owner, token = consenting_guest()
    owner, photo = consenting_guest_with_photo(owner)
    pack = StylePack.objects.get(slug="avatar")
    done = Job.objects.create(user=owner, photo=photo, pack=pack, seed=1)
    output = store_output_for(done)
    queued = Job.objects.create(user=owner, photo=photo, pack=pack, seed=2)
    share = do_create_share(owner, output.id, owner.language)
    email = f"account-{next(_emails)}@example.com"
    User.objects.create_user(email=email, password="monsoon kites over Pune")
    WORLD.clear()
    WORLD.update(owner=token, peer=consenting_guest()[1], photo=str(photo.id), jobs=[str(done.id), str(queued.id)],
                 output=str(output.id), share=share.token, consent_version=consent_version(),
                 account=(email, "monsoon kites over Pune"))


@contextmanager
def keep_connection():
    """Requests go to the WSGI app in this thread: keep Django from closing the test's database
    connection (and its transaction) after each, as django.test.Client does."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


_caches = itertools.count()
RUN = {"cases": 0, "started": None}


@pytest.fixture(autouse=True)
def own_world(settings):
    """A cache of its own (rate-limit counts stay here) and a fast password hash (sign-up and
    sign-in cases hash every time; the hash's cost is not what is tested here)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"api-fuzz-{next(_caches)}"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Limits low enough that the cases reach them: 429s and their Retry-After are checked too.
    settings.AVATAR_RATE_GUESTS_PER_HOUR = settings.AVATAR_RATE_REGISTRATIONS_PER_HOUR = 2
    settings.AVATAR_RATE_UPLOADS_PER_HOUR = settings.AVATAR_RATE_LOGINS_PER_HOUR = 3
    settings.AVATAR_RATE_CLIENT_LOGIN_FAILURES_PER_HOUR = 20
    settings.AVATAR_MAX_ACTIVE_JOBS = 3
    yield
    WORLD.clear()


@pytest.fixture(scope="module", autouse=True)
def measured(request):
    """Say how many cases ran, in how long (the figures README quotes)."""
    RUN["started"] = time.monotonic()
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and RUN["cases"]:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nschemathesis: {RUN['cases']} cases, {len(ALL_CHECKS)} checks + 1 of ours, "
                                f"{time.monotonic() - RUN['started']:.0f} s")
    purge_queue()  # the jobs the cases queued (their rows are rolled back)


@pytest.fixture
def as_guest(db, packs):
    with keep_connection():
        make_world()
        yield


@pytest.fixture
def without_credentials(db, packs):
    with keep_connection():
        WORLD.clear()
        yield


def run(case) -> None:
    RUN["cases"] += 1
    case.call_and_validate(checks=ALL_CHECKS, additional_checks=[positive_refusals_name_their_rule])


@schema.parametrize()
@SETTINGS
def test_every_operation_as_a_guest(case, as_guest):
    run(case)


@schema.parametrize()
@hypothesis.settings(SETTINGS, max_examples=MAX_EXAMPLES_ANONYMOUS)
def test_every_operation_without_credentials(case, without_credentials):
    run(case)


def test_workflows(as_guest):
    class Workflow(schema.as_state_machine()):
        def setup(self):
            make_world()  # each scenario starts from a fresh guest

        def step(self, input):
            RUN["cases"] += 1
            return super().step(input)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=ALL_CHECKS, additional_checks=[positive_refusals_name_their_rule],
                                   transport_kwargs=kwargs or None, recorder=self.recorder)

    run_state_machine_as_test(Workflow, settings=hypothesis.settings(
        SETTINGS, max_examples=SCENARIOS, stateful_step_count=SCENARIO_STEPS, phases=[hypothesis.Phase.generate]))
