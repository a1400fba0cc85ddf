"""The lease on a job's folder: one sharded job at a time writes it.

Two jobs of other inputs or parameters writing one folder at once would mix their shards under
one manifest. So a job first takes the folder's lease, the file
`<folder>/.job-lease/<generation>.json`, made by an exclusive create (`create_bytes`: on S3 a
PUT with If-None-Match: *, on a local disk a hard link) that names the job's fingerprint, what
it is and its holder (host, process). A heartbeat thread renews it; a lease whose heartbeat is
older than its time to live, or whose holder process is gone from this host, is taken over by
creating the next generation, which again only one job can do. The highest generation is the
lease in force. Another job is refused while it is; the same job (its fingerprint) waits, then
finds the folder complete, or resumes it when that run failed. Heartbeats are wall-clock times:
hosts that share a folder need clocks within a fraction of `TTL`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from stargan_core.storage import Location, StorageError, create_bytes, is_local, write_bytes

LEASES = ".job-lease"
TTL = 60.0  # seconds without a heartbeat after which a holder on another host counts as gone
_NAME = re.compile(r"^(\d{10})\.json$")
_HELD: dict[str, Lease] = {}  # the leases this process holds, by folder URL
log = logging.getLogger(__name__)


class OutputBusy(StorageError):
    """Another job holds the lease on the folder, or took it over from this one."""


class Lease:
    """The lease this process holds on `out`, renewed every quarter of `ttl` until released."""

    def __init__(self, out: Location, generation: int, document: dict[str, Any], ttl: float):
        self.out, self.generation, self.document, self.ttl = out, generation, document, ttl
        self.path = _path(out, generation)
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                           name=f"lease {out.url}")
        self._heartbeat.start()

    @property
    def fingerprint(self) -> str:
        return self.document["fingerprint"]

    def in_force(self) -> bool:
        """Whether this is still the lease in force (no other job took it over)."""
        generations = _generations(self.out)
        return bool(generations) and generations[-1] == self.generation

    def check(self) -> None:
        """Raise OutputBusy when another job took the lease over, presuming this one gone."""
        if not self.in_force():
            raise OutputBusy(
                f"another job took over the lease on {self.out.url} (this job's heartbeat "
                f"stopped for over {self.ttl:.0f} s): the folder may hold that job's shards "
                "now; run this job again")

    def release(self) -> None:
        """Stop renewing and remove the lease file: the folder is free for the next job."""
        self._stop.set()
        self._heartbeat.join()  # no renewal may write the file again once it is removed
        if _HELD.get(self.out.url) is self:
            del _HELD[self.out.url]
        with contextlib.suppress(FileNotFoundError):
            self.out.fs.rm_file(self.path)
        if is_local(self.out.fs):  # object stores have no folders
            with contextlib.suppress(OSError):
                os.rmdir(self.out.join(LEASES))  # only when empty

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                if not self.in_force():
                    return  # taken over: `check` says so before the job publishes
                now = time.time()
                self.document |= {"heartbeat": now, "expires": now + self.ttl}
                write_bytes(self.out.fs, self.path, _encode(self.document))
            except Exception as error:  # storage out of reach for a moment: the next beat
                log.warning("could not renew the lease on %s: %s", self.out.url, error)


def _path(out: Location, generation: int) -> str:
    return out.join(LEASES, f"{generation:010d}.json")


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def _generations(out: Location) -> list[int]:
    """The generations of the lease files in `out`, in order: the last is in force."""
    folder = out.join(LEASES)
    out.fs.invalidate_cache(folder)  # other processes change it
    try:
        names = out.fs.ls(folder, detail=False)
    except FileNotFoundError:
        return []
    return sorted(int(m[1]) for name in names if (m := _NAME.match(name.rsplit("/", 1)[-1])))


def _read(out: Location, generation: int) -> dict[str, Any] | None:
    try:
        return json.loads(out.fs.cat_file(_path(out, generation)))
    except FileNotFoundError:
        return None


def _gone(document: dict[str, Any]) -> bool:
    """Whether a lease's holder has stopped: no heartbeat for its time to live, or a process
    of this host that no longer exists."""
    if time.time() > document["expires"]:
        return True
    holder = document["holder"]
    if holder["host"] != socket.gethostname():
        return False
    try:
        os.kill(holder["pid"], 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


def _busy(out: Location, document: dict[str, Any], hint: str) -> str:
    holder = document["holder"]
    return (f"{out.url} is being written by another job: {document['about']} (process "
            f"{holder['pid']} on {holder['host']}, since {document['since']}; heartbeat "
            f"{time.time() - document['heartbeat']:.0f} s ago). Wait for it to end (a job that "
            f"stopped gives the folder up {document['ttl']:.0f} s after its last heartbeat), "
            f"or {hint}")


def acquire(out: Location, fingerprint: str, about: str, hint: str, ttl: float = TTL
            ) -> Lease:
    """Take the lease on `out` for the job `fingerprint` (`about`: what the job is, for the
    errors of others). While the same job holds it elsewhere, wait for that run to end; while
    another job holds it, raise OutputBusy, ending with what to do (`hint`)."""
    held = _HELD.get(out.url)
    if held is not None and held.fingerprint == fingerprint:
        return held  # this process runs the job already (a run of it here that failed)
    waiting = False
    while True:
        generations = _generations(out)
        top = generations[-1] if generations else 0
        current = _read(out, top) if top else None
        if top and current is None:
            continue  # released while we looked: look again
        if current is not None and not _gone(current):
            if current["fingerprint"] != fingerprint:
                raise OutputBusy(_busy(out, current, hint))
            if not waiting:
                log.warning("%s is being written by this same job (process %s on %s): waiting "
                            "for it to end", out.url, current["holder"]["pid"],
                            current["holder"]["host"])
                waiting = True
            time.sleep(min(ttl / 4, 2.0))
            continue
        now = time.time()
        document = {"fingerprint": fingerprint, "about": about, "ttl": ttl,
                    "holder": {"host": socket.gethostname(), "pid": os.getpid()},
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                    "heartbeat": now, "expires": now + ttl}
        try:
            create_bytes(out.fs, _path(out, top + 1), _encode(document))
        except FileExistsError:  # another job was quicker
            continue
        except FileNotFoundError:
            if not is_local(out.fs):
                raise
            continue  # a job that just ended removed the folder
        if current is not None:
            log.warning("taking over %s from process %s on %s, which is gone", out.url,
                        current["holder"]["pid"], current["holder"]["host"])
        for old in generations:  # a holder that is gone
            with contextlib.suppress(FileNotFoundError):
                out.fs.rm_file(_path(out, old))
        lease = _HELD[out.url] = Lease(out, top + 1, document, ttl)
        return lease


@contextlib.contextmanager
def exclusive(out: Location, about: str, hint: str, ttl: float = TTL) -> Iterator[Lease]:
    """Hold the lease on `out` while inside, with no one else: a training's run folder, which
    no second run may write into, even one of this process."""
    lease = acquire(out, f"{about} {uuid.uuid4().hex}", about, hint, ttl)
    try:
        yield lease
    finally:
        lease.release()


def holding(out: Location) -> Lease | None:
    """The lease this process holds on `out`, if any."""
    return _HELD.get(out.url)


def release(out: Location) -> None:
    """Give back the lease this process holds on `out`, if any: its job ended or failed."""
    lease = _HELD.get(out.url)
    if lease is not None:
        lease.release()
