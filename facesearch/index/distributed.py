"""Indexing on a Ray cluster: photos are described by Ray actors, the one driver commits them.

`facesearch index PATH --ray ADDRESS` (Settings.ray_address, FACESEARCH_RAY) hands the Indexer a
RayDescriber instead of the local pipeline.describer.Describer. Both have the same contract
(`stream(items)`: media in, (original size, faces) or the exception out, in order), and each Ray
actor runs that same Describer.stream over the chunks it is sent: the worker function is one,
whichever runs it. Each actor loads the models once (master descriptor, identity network,
detector and parser) and keeps them for the run.

Everything else stays with the driver, unchanged (index/indexer.py): finding the files, hashing
them, skipping unchanged ones, and writing checkpoints (vector files, then the SQL rows of each
photo in one transaction), so a photo is committed whole or not at all, by one process, into the
one index (SQLite, or PostgreSQL through --db-url when several machines need to read it).
Chunks are handed out as actors become free (at most two per actor) and their results are put
back in order. When an actor is lost (its process or its machine), only the chunks it held are
described again, by the other actors; Ray restarts it where it can and it rejoins. A chunk lost
more than MAX_RETRIES times is recorded as failed with the reason (the next `facesearch index`
describes its photos again); when every actor is lost for good the run stops with a one-line
error, keeping what its checkpoints wrote.

Every machine needs the same facesearch (the same weights: the actors' pipeline version is
checked against the index's) and the photos at the same paths (a shared folder). Actors are CPU
actors of CPUS_PER_WORKER cores; the pipeline's models run on the CPU.

    with RayDescriber(settings, version=index_version) as describer:
        for outcome in describer.stream(paths): ...   # first use: connects, one actor per CPU,
                                                      # models loaded, their version checked
"""
from __future__ import annotations

import logging
import pickle
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from facesearch.errors import FaceSearchError, first_line
from facesearch.pipeline.describer import Described, Describer, pipeline_version
from facesearch.settings import DEFAULTS, Settings

#: Cores each actor asks of Ray (and threads its Describer prepares photos on).
CPUS_PER_WORKER = 1
#: Chunks waiting at an actor besides the one it works on, so it never waits for the driver.
QUEUED_PER_WORKER = 1
#: How often Ray restarts a lost actor, and how often a chunk is sent again after its actor was lost.
MAX_RETRIES = 3
#: Seconds to wait for a cluster's address to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 10.0
#: Seconds the actors may take to start and load their models (a few on an idle machine).
START_TIMEOUT = 600.0
#: Settings.ray_address value that means a Ray on this machine (see `connect`).
AUTO = "auto"


def _ray():
    """The `ray` module, or a one-line FaceSearchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FaceSearchError("indexing with --ray needs Ray: pip install 'facesearch[ray]'") from None
    return ray


def connect(address: str) -> bool:
    """Connect this process to a Ray cluster: "HOST:PORT" (a head node, `ray start --head`), or
    AUTO: Ray's default (RAY_ADDRESS, else the cluster `ray start` started on this machine, else
    a new Ray on this machine for this process). Returns whether this call connected (False:
    already connected, and left so). FaceSearchError (one line) when Ray is not installed or the
    address does not answer within CONNECT_TIMEOUT seconds."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if address != AUTO:
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
        except OSError as error:
            raise FaceSearchError(f"Ray cluster at {address} cannot be reached "
                                  f"({error.strerror or error}); is `ray start --head` running there?") from None
    try:
        ray.init(address=None if address == AUTO else address, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        hint = ("; a cluster with token authentication (new Ray clusters have it) needs its token "
                "here too: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
                if address != AUTO else "")
        raise FaceSearchError(f"Ray at {address}: {first_line(error)}{hint}") from None
    return True


def _host_port(address: str) -> tuple[str, int]:
    """(host, port) of a "HOST:PORT" Ray address; FaceSearchError (one line) if it is not one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FaceSearchError(f"Ray address {address!r}: give HOST:PORT of the head node "
                              f"(`ray start --head` prints it) or {AUTO!r}")
    return host, int(port)


class _Worker:
    """One Ray actor's state: a Describer (its models loaded once) with the driver's settings."""

    def __init__(self, settings: Settings):
        self.settings = settings.replace(describe_threads=CPUS_PER_WORKER)
        self.describer = Describer(self.settings)

    def ready(self) -> tuple[str, str, str]:
        """Load the models (the detector's and parser's too, on the preparing thread); (this
        machine's name, its Ray node id, the pipeline version the models describe with)."""
        import ray

        model = self.describer.model
        _ = self.describer.identity_model
        list(self.describer.stream([np.zeros((64, 64, 3), np.uint8)]))  # the detector and parser
        return (socket.gethostname(), ray.get_runtime_context().get_node_id(),
                pipeline_version(model.version, self.settings))

    def cpu_seconds(self) -> float:
        """CPU time this actor's process has used (s, all its threads)."""
        return time.process_time()

    def describe(self, items: list) -> list[Described | Exception]:
        """Describer.stream over `items`, as a list the driver can receive: faces without their
        crop and masks (the index does not keep them), exceptions that pickle."""
        return [_portable(outcome) for outcome in self.describer.stream(items)]


def _portable(outcome: Described | Exception) -> Described | Exception:
    """An outcome as small as the index needs, and picklable."""
    if isinstance(outcome, Exception):
        try:
            pickle.loads(pickle.dumps(outcome))
            return outcome
        except Exception:  # noqa: BLE001 - an exception type that does not survive pickling
            return RuntimeError(first_line(outcome, with_type=True))
    size, faces = outcome
    for face in faces:
        face.crop = face.masks = np.empty(0, np.uint8)
    return size, faces


class RayDescriber:
    """Photos -> faces on the actors of a Ray cluster, in order (the contract of
    Describer.stream). Connects on first use (see `connect`); `close()` (or leaving a `with`
    block) ends the actors and the connection it made. Faces come without `crop` and `masks`."""

    def __init__(self, settings: Settings = DEFAULTS, address: str | None = None,
                 workers: int | None = None, version: str | None = None):
        """`address`: a Ray address (default Settings.ray_address, else AUTO); `workers`: how
        many actors (default: one per CPUS_PER_WORKER cores of the cluster); `version`: the
        pipeline version (describer.pipeline_version) every actor must describe with (the
        index's), or None to accept any. Nothing starts before `start` or `stream`.
        FaceSearchError if `address` is neither AUTO nor HOST:PORT."""
        self.settings = settings
        self.address = address or settings.ray_address or AUTO
        if self.address != AUTO:
            _host_port(self.address)
        self.workers = workers
        self.version = version
        self._actors: list = []
        self._started: list[str] = []
        self._connected = False

    def __enter__(self) -> RayDescriber:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def start(self) -> list[str]:
        """Start the actors (if not yet) and wait until each has loaded its models; the Ray node
        id of each (the machine it runs on). FaceSearchError if an actor's pipeline version is
        not `version` (another facesearch or other weights on that machine), or an actor cannot
        start or is not ready within START_TIMEOUT seconds (e.g. more workers than the cluster
        has CPUs)."""
        ray = _ray()
        if self._started:
            return self._started
        if not self._actors:
            self._connected = connect(self.address) or self._connected
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // CPUS_PER_WORKER)
            # a lost actor's chunks fail at once (no retries held for it: its machine may be
            # gone) and go to the others (stream); Ray restarts the actor where it can
            actor = ray.remote(num_cpus=CPUS_PER_WORKER, max_restarts=MAX_RETRIES,
                               max_task_retries=0)(_Worker)
            self._actors = [actor.remote(self.settings) for _ in range(count)]
        try:
            answers = ray.get([actor.ready.remote() for actor in self._actors], timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise FaceSearchError(
                f"{len(self._actors)} Ray workers of {CPUS_PER_WORKER} CPU were not ready after "
                f"{START_TIMEOUT:.0f} s (the cluster has {ray.cluster_resources().get('CPU', 0):g} "
                "CPUs)") from None
        except Exception as error:  # noqa: BLE001 - Ray's errors, said in one line
            raise FaceSearchError(f"Ray workers could not start: {first_line(error, with_type=True)}") from None
        for host, _, version in answers:
            if self.version is not None and version != self.version:
                raise FaceSearchError(
                    f"the Ray worker on {host} describes with {version}, this index with "
                    f"{self.version}: install the same facesearch on every machine")
        self._started = [node for _, node, _ in answers]
        return self._started

    def stream(self, items: Iterable) -> Iterator[Described | Exception]:
        """Per item, in order: (original size, faces) or the exception describing it raised.

        Items go out in chunks to the least busy live actor (at most 1 + QUEUED_PER_WORKER
        each). When an actor is lost (its process or its machine), the chunks it held go to the
        others; it rejoins once Ray has restarted it (it answers `ready` again). A chunk lost
        more than MAX_RETRIES times gives each of its items that error. FaceSearchError when
        every actor is lost and none is back within START_TIMEOUT seconds."""
        items = list(items)
        if not items:
            return
        ray = _ray()
        self.start()
        per_chunk = max(1, min(self.settings.describe_batch,
                               -(-len(items) // ((1 + QUEUED_PER_WORKER) * len(self._actors)))))
        chunks = [items[start:start + per_chunk] for start in range(0, len(items), per_chunk)]
        waiting = deque(range(len(chunks)))  # chunk numbers not yet sent (or to send again)
        lost = [0] * len(chunks)             # times each chunk's actor was lost
        load = [0] * len(self._actors)       # chunks each actor holds
        alive = set(range(len(self._actors)))
        flying: dict = {}                    # ObjectRef -> (chunk number, actor number)
        pings: dict = {}                     # ObjectRef of a lost actor's `ready` -> actor number
        done: dict[int, list] = {}
        for number in range(len(chunks)):
            while number not in done:
                while waiting and alive and min(load[w] for w in alive) <= QUEUED_PER_WORKER:
                    worker = min(alive, key=load.__getitem__)
                    chunk = waiting.popleft()
                    flying[self._actors[worker].describe.remote(chunks[chunk])] = (chunk, worker)
                    load[worker] += 1
                finished = ray.wait([*flying, *pings], num_returns=1,
                                    timeout=None if flying else START_TIMEOUT)[0] if flying or pings else []
                if not finished:
                    raise FaceSearchError(
                        f"every Ray worker was lost and none came back within {START_TIMEOUT:.0f} s; "
                        "run the same command again to carry on")
                for ref in finished:
                    if ref in pings:  # a lost actor is back (restarted by Ray)
                        worker = pings.pop(ref)
                        try:
                            ray.get(ref)
                            alive.add(worker)
                        except ray.exceptions.ActorUnavailableError:  # not yet: ask again
                            pings[self._actors[worker].ready.remote()] = worker
                        except ray.exceptions.RayError:
                            pass  # gone for good
                        continue
                    chunk, worker = flying.pop(ref)
                    load[worker] -= 1
                    try:
                        done[chunk] = ray.get(ref)
                    except ray.exceptions.RayActorError as error:
                        if worker in alive:
                            alive.discard(worker)
                            pings[self._actors[worker].ready.remote()] = worker
                        lost[chunk] += 1
                        if lost[chunk] > MAX_RETRIES:
                            failure = RuntimeError(f"Ray worker lost ({first_line(error, with_type=True)})")
                            done[chunk] = [failure] * len(chunks[chunk])
                        else:  # described again, by the next free actor
                            waiting.appendleft(chunk)
                    except Exception as error:  # noqa: BLE001 - the chunk's items say why
                        failure = RuntimeError(f"Ray: {first_line(error, with_type=True)}")
                        done[chunk] = [failure] * len(chunks[chunk])
            yield from done.pop(number)

    def cpu_seconds(self) -> float:
        """CPU time the actors' processes have used so far (s, summed; 0 before `start`): with
        the faces described, the CPU cost of a face whatever else the machines run."""
        if not self._actors:
            return 0.0
        return float(sum(_ray().get([actor.cpu_seconds.remote() for actor in self._actors])))

    def close(self) -> None:
        """End the actors, and the connection to Ray if this describer made it."""
        if not self._actors and not self._connected:
            return
        ray = _ray()
        for actor in self._actors:
            ray.kill(actor)
        self._actors, self._started = [], []
        if self._connected and ray.is_initialized():
            ray.shutdown()
        self._connected = False
