"""Download a catalogue entry into the models folder: resumable, verified, installed in one step.

Each file is streamed into ``<models>/.staging/<name>/<file>.part``; when a ``.part`` is there
from an earlier run (or a cut connection) the download goes on from its end with an HTTP
``Range: bytes=N-`` request. A server that answers ``200`` instead of ``206`` restarts the file,
``416`` drops the ``.part``. A finished file is checked against the catalogue's size and SHA-256
before it loses its ``.part`` suffix (a mismatch removes it), and only when every file of the
entry has been checked is the staging folder moved to ``<models>/<name>/`` with its record.
A later run that finds the record and every file in place does not touch the network.

URLs, the endpoint (``HF_ENDPOINT``, an operator's mirror), the token (``HF_TOKEN``) and the HTTP
client come from ``huggingface_hub``; the transfer itself is done here so that resume and
verification are under our control.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers, get_session
from tqdm import tqdm

from avatarapp.env import foreign
from avatarapp.modelstore import store
from avatarapp.modelstore.catalogue import CatalogueEntry, CatalogueFile
from avatarapp.modelstore.errors import ModelStoreError

# Consecutive failed attempts (a cut with no bytes received, a 5xx) before a file is given up;
# an attempt that received bytes resets the count, so a long download survives many cuts.
RETRIES = 4
BACKOFF_SECONDS = 1.0  # doubled after each failed attempt that received nothing
VERIFIED = ".verified.json"  # in a staging folder: the files already checked, with their SHA-256
PARTS = ".parts.json"  # in a staging folder: which SHA-256 each .part is the beginning of
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


def hub_endpoint() -> str:
    """HF_ENDPOINT as it is now (huggingface_hub reads it once, at import), else the hub's."""
    return (foreign("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def file_url(file: CatalogueFile, endpoint: str) -> str:
    return hf_hub_url(file.repo, file.path, revision=file.revision, endpoint=endpoint)


@dataclass
class FetchResult:
    target: Path
    installed: bool  # False: it was already there, nothing was fetched
    received: int  # bytes received over the network by this run


def expected_files(entry: CatalogueEntry) -> list[dict[str, Any]]:
    return [{"path": f.save_as, "size": f.size, "sha256": f.sha256} for f in entry.files]


class Fetcher:
    """Downloads one entry; ``say`` prints operator messages, tqdm bars go to stderr on a terminal."""

    def __init__(self, entry: CatalogueEntry, folder: Path, *, timeout: float, say: Callable[[str], None],
                 progress: bool | None = None) -> None:
        self.entry = entry
        self.folder = folder
        self.target = folder / entry.name
        self.staging = store.staging_root(folder) / entry.name
        self.timeout = timeout
        self.say = say
        self.progress = progress
        self.endpoint = hub_endpoint()
        self.received = 0
        self.total_bar: tqdm[Any] | None = None

    # --- staging state -----------------------------------------------------------------
    def _verified(self) -> dict[str, str]:
        try:
            data = json.loads((self.staging / VERIFIED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _mark_verified(self, file: CatalogueFile) -> None:
        verified = self._verified()
        verified[file.save_as] = file.sha256
        store.write_json(self.staging / VERIFIED, verified)

    def _part_owner(self, file: CatalogueFile, claim: bool) -> bool:
        """Whether the file's .part belongs to this catalogue version of it; ``claim`` records that it does."""
        try:
            parts = json.loads((self.staging / PARTS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            parts = {}
        parts = parts if isinstance(parts, dict) else {}
        if claim:
            parts[file.save_as] = file.sha256
            store.write_json(self.staging / PARTS, parts)
        return parts.get(file.save_as) == file.sha256

    def _is_staged(self, file: CatalogueFile, verified: dict[str, str]) -> bool:
        path = self.staging / file.save_as
        return verified.get(file.save_as) == file.sha256 and path.is_file() and path.stat().st_size == file.size

    def _reuse_installed(self, verified: dict[str, str], rehash: bool) -> None:
        """Files an older install of this entry already has, verified, are linked in, not fetched again
        (with ``rehash``, only those whose bytes still have their SHA-256)."""
        record = store.read_record(self.target)
        if record is None:
            return
        known = {(str(f.get("path")), int(f.get("size", -1)), str(f.get("sha256"))) for f in record["files"]}
        for file in self.entry.files:
            source = self.target / file.save_as
            if (self._is_staged(file, verified) or (file.save_as, file.size, file.sha256) not in known
                    or not source.is_file() or source.stat().st_size != file.size
                    or rehash and store.sha256_file(source) != file.sha256):
                continue
            dest = self.staging / file.save_as
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                os.link(source, dest)
            except OSError:
                shutil.copy2(source, dest)
            self._mark_verified(file)
            verified[file.save_as] = file.sha256

    # --- the run ------------------------------------------------------------------------
    def run(self, *, rehash: bool = False) -> FetchResult:
        entry = self.entry
        if store.record_matches(self.target, expected_files(entry), rehash=rehash):
            return FetchResult(self.target, installed=False, received=0)
        if self.target.exists() or self.target.is_symlink():
            installed = store.read_record(self.target)
            if installed is None:
                raise ModelStoreError(
                    f"{self.target} exists but was not installed by fetch_model or import_model (it has no "
                    f"chhavi_model.json); move it away, or import it with `python manage.py import_model`")
            if not self._same_entry(installed):
                raise ModelStoreError(
                    f"{self.target} holds another model ({_describe(installed.get('source'))}); move it away, or "
                    f"remove it, before fetching {entry.name}")
        if foreign("HF_HUB_OFFLINE").lower() in ("1", "true", "yes", "on") or constants.is_offline_mode():
            raise ModelStoreError(f"HF_HUB_OFFLINE is set, so {entry.name} cannot be downloaded; unset it, or bring "
                                  f"the model in with `python manage.py import_model`")
        self.staging.mkdir(parents=True, exist_ok=True)
        try:
            self._fetch_pending(rehash)
        except BaseException:
            self._drop_empty_staging()
            raise
        record = store.make_record(
            name=entry.name, title=entry.title, family=entry.family, kind=entry.kind,
            source={"kind": "catalogue", "catalogue_name": entry.name, "repo": entry.repo,
                    "revision": entry.revision, "endpoint": self.endpoint},
            files=expected_files(entry), checkpoint=entry.checkpoint, licence=entry.licence,
            licence_url=entry.licence_url, commercial_use=entry.commercial_use)
        (self.staging / VERIFIED).unlink(missing_ok=True)
        (self.staging / PARTS).unlink(missing_ok=True)
        try:
            store.write_record(self.staging, record)
            store.install(self.staging, self.target, replace=True)
        except OSError as e:
            if store.is_no_space(e):
                raise ModelStoreError(store.no_space_message(self.folder, f"{entry.name}'s record")) from None
            raise
        return FetchResult(self.target, installed=True, received=self.received)

    def _fetch_pending(self, rehash: bool) -> None:
        """Bring every file of the entry into the staging folder, verified."""
        entry = self.entry
        verified = self._verified()
        self._reuse_installed(verified, rehash)
        pending = [f for f in entry.files if not self._is_staged(f, verified)]
        have = sum(self._part(f).stat().st_size for f in pending
                   if self._part(f).is_file() and self._part_owner(f, claim=False))
        needed = max(0, sum(f.size for f in pending) - have)
        store.check_free_space(self.folder, needed, f"{entry.name} ({entry.title})")
        if pending:
            self.say(f"fetching {entry.name} ({entry.title}) from {self.endpoint}/{entry.repo} at "
                     f"{entry.revision[:12]}: {len(pending)} file{'s' if len(pending) > 1 else ''}, "
                     f"{store.human_size(needed)} to download"
                     + (f" ({store.human_size(have)} already here)" if have else ""))
        self.total_bar = tqdm(total=sum(f.size for f in pending), initial=have, unit="B", unit_scale=True,
                              unit_divisor=1024, desc=entry.name, file=sys.stderr, disable=self._bars_off(),
                              position=0)
        try:
            for file in pending:
                self._fetch_file(file)
        finally:
            self.total_bar.close()

    def _same_entry(self, record: dict[str, Any]) -> bool:
        """Whether an installed record came from this catalogue entry (maybe another revision, or by bundle)."""
        source = record.get("source")
        if isinstance(source, dict) and source.get("kind") == "bundle":
            source = source.get("original")
        return (isinstance(source, dict) and source.get("kind") == "catalogue"
                and source.get("catalogue_name") == self.entry.name)

    def _drop_empty_staging(self) -> None:
        """After a failure, a staging folder holding nothing worth resuming goes (its bookkeeping too)."""
        if self.staging.is_dir() and all(p.is_dir() or p.name in (VERIFIED, PARTS) for p in self.staging.rglob("*")):
            store.remove_tree(self.staging)

    def _bars_off(self) -> bool | None:
        return None if self.progress is None else not self.progress

    def _part(self, file: CatalogueFile) -> Path:
        dest = self.staging / file.save_as
        return dest.with_name(dest.name + ".part")

    def _fetch_file(self, file: CatalogueFile) -> None:
        dest = self.staging / file.save_as
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = self._part(file)
        try:
            digest = self._download(file, part)
        except OSError as e:
            if store.is_no_space(e):
                part.unlink(missing_ok=True)
                raise ModelStoreError(store.no_space_message(self.folder, file.save_as)) from None
            raise ModelStoreError(f"cannot write {part}: {e.strerror or e}") from None
        if digest != file.sha256:
            part.unlink(missing_ok=True)
            raise ModelStoreError(
                f"{file.save_as} of {self.entry.name} failed its checksum: expected sha256 {file.sha256}, got "
                f"{digest}. The download was removed and nothing was installed; the catalogue entry or the "
                f"server ({self.endpoint}) is wrong")
        os.replace(part, dest)
        self._mark_verified(file)

    def _download(self, file: CatalogueFile, part: Path) -> str:
        """Bring ``part`` to the file's full size, resuming and retrying; the SHA-256 of what it holds."""
        url = file_url(file, self.endpoint)
        digest, have = hashlib.sha256(), 0
        if part.is_file():
            if part.stat().st_size > file.size or not self._part_owner(file, claim=False):
                part.unlink()  # longer than the file, or left by another version of it
            else:
                with part.open("rb") as f:  # the bytes already here count towards the checksum
                    while chunk := f.read(store.CHUNK):
                        digest.update(chunk)
                        have += len(chunk)
        self._part_owner(file, claim=True)
        # Identity: a mirror that gzips JSON would break both the size check and byte ranges.
        headers = {**build_hf_headers(library_name="chhavi"), "Accept-Encoding": "identity"}
        failures, backoff = 0, BACKOFF_SECONDS
        bar = tqdm(total=file.size, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=file.save_as,
                   file=sys.stderr, disable=self._bars_off(), position=1, leave=False)
        try:
            while have < file.size:
                request_headers = dict(headers)
                if have:
                    request_headers["Range"] = f"bytes={have}-"
                got = 0
                try:
                    with get_session().stream("GET", url, headers=request_headers,
                                              timeout=httpx2.Timeout(self.timeout)) as response:
                        start = self._check_response(response, file, url, have)
                        if start is None:  # 416: the .part cannot be continued
                            part.unlink(missing_ok=True)
                            digest, have = hashlib.sha256(), 0
                            bar.reset(total=file.size)
                            failures += 1
                            if failures > RETRIES:
                                raise ModelStoreError(f"{url} refuses every range request (HTTP 416)")
                            continue
                        if start == 0 and have:
                            self.say(f"{self.endpoint} does not resume downloads: {file.save_as} starts over")
                            digest, have = hashlib.sha256(), 0
                            bar.reset(total=file.size)
                        with part.open("ab" if have else "wb") as out:
                            for chunk in response.iter_raw():  # as it arrives: nothing buffered is lost to a cut
                                if have + len(chunk) > file.size:
                                    raise _SizeMismatch(self._size_message(file, f"more than {file.size}"))
                                out.write(chunk)
                                digest.update(chunk)
                                have += len(chunk)
                                got += len(chunk)
                                self.received += len(chunk)
                                bar.update(len(chunk))
                                if self.total_bar is not None:
                                    self.total_bar.update(len(chunk))
                            out.flush()
                            os.fsync(out.fileno())
                    if have < file.size:
                        raise httpx2.RemoteProtocolError("the server ended the response early")
                except OfflineModeIsEnabled:
                    raise ModelStoreError(f"HF_HUB_OFFLINE is set, so {file.save_as} cannot be downloaded; unset "
                                          f"it, or bring the model in with `python manage.py import_model`") from None
                except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.UnsupportedProtocol) as e:
                    raise ModelStoreError(self._unreachable(e, part, have)) from None
                except httpx2.TimeoutException:
                    if got == 0:
                        raise ModelStoreError(
                            f"no answer from {self.endpoint} within {self.timeout:g} s (AVATAR_DOWNLOAD_TIMEOUT) "
                            f"while fetching {file.save_as}" + self._kept(part, have)) from None
                    failures = 0
                except httpx2.TransportError:
                    if got:
                        failures, backoff = 0, BACKOFF_SECONDS  # progress: go on from where it stopped
                        continue
                    failures += 1
                    if failures > RETRIES:
                        raise ModelStoreError(
                            f"the connection to {self.endpoint} broke {failures} times in a row while fetching "
                            f"{file.save_as}" + self._kept(part, have)) from None
                    time.sleep(backoff)
                    backoff *= 2
                except _Retry as e:
                    failures += 1
                    if failures > RETRIES:
                        raise ModelStoreError(f"{url} answered HTTP {e.status} {failures} times; try again later"
                                              + self._kept(part, have)) from None
                    time.sleep(backoff)
                    backoff *= 2
        except _SizeMismatch:
            part.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
        return digest.hexdigest()

    def _check_response(self, response: httpx2.Response, file: CatalogueFile, url: str, have: int) -> int | None:
        """Where the body starts (0 for a whole file), None for 416; errors for everything unusable."""
        status = response.status_code
        if status == 416:
            return None
        if status in RETRY_STATUSES:
            raise _Retry(status)
        if status in (401, 403):
            raise ModelStoreError(
                f"{url} answered HTTP {status}: the repository {file.repo} needs a Hugging Face account that has "
                f"accepted its licence. Accept it on https://huggingface.co/{file.repo} and set HF_TOKEN "
                f"to that account's access token")
        if status == 404:
            raise ModelStoreError(f"{url} was not found (HTTP 404): the catalogue's repo, revision or path for "
                                  f"{file.save_as} is wrong, or the mirror at {self.endpoint} lacks the file")
        if status == 200:
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) != file.size:
                raise _SizeMismatch(self._size_message(file, f"{int(length)}"))
            return 0
        if status == 206:
            start, total = _content_range(response.headers.get("content-range", ""))
            if total is not None and total != file.size:
                raise _SizeMismatch(self._size_message(file, f"{total}"))
            if start != have:
                raise ModelStoreError(f"{url} answered a resume from byte {have} with bytes from {start}; "
                                      f"remove {self._part(file)} and run again")
            return start
        raise ModelStoreError(f"{url} answered HTTP {status} {response.reason_phrase}; expected the file")

    def _size_message(self, file: CatalogueFile, got: str) -> str:
        return (f"{file.save_as} of {self.entry.name} has the wrong size: expected {file.size} bytes, the server "
                f"has {got} bytes; nothing was installed (the catalogue entry or {self.endpoint} is wrong)")

    def _kept(self, part: Path, have: int) -> str:
        if have:
            return f"; the {store.human_size(have)} received so far are kept in {part}: run the command again to resume"
        return ""

    def _unreachable(self, error: Exception, part: Path, have: int) -> str:
        return (f"cannot reach {self.endpoint} ({error or type(error).__name__}). Check the network, or set "
                f"HF_ENDPOINT to a mirror; on a machine with no network, bring the model in with `python "
                f"manage.py import_model` (see export_bundle)" + self._kept(part, have))


def _describe(source: Any) -> str:
    if isinstance(source, dict) and source.get("kind") == "import":
        return f"imported from {source.get('path')}"
    if isinstance(source, dict) and source.get("kind") == "bundle":
        return f"from the bundle {source.get('path')}"
    if isinstance(source, dict) and source.get("kind") == "catalogue":
        return f"the catalogue's {source.get('catalogue_name')}"
    return "of unknown origin"


class _SizeMismatch(ModelStoreError):
    """The server's file is not the catalogue's size: the .part is useless and removed."""


class _Retry(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _content_range(value: str) -> tuple[int, int | None]:
    """(start, total) of ``bytes START-END/TOTAL`` (TOTAL may be ``*``)."""
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-", 1)[0])
        if unit != "bytes":
            raise ValueError(value)
        return start, None if total == "*" else int(total)
    except ValueError:
        return -1, None

