"""Indexing speed on Ray with 1 and 2 local workers, beside the single process (prints figures).

    python bench/ray_throughput.py [--photos 60] [--folder celeba/wild] [--workers 1 2]

The same N photos of ../shared/data are indexed into a fresh index by this process alone
(pipeline.describer.Describer, Settings.describe_threads threads) and then with `ray` (index/
distributed.py) on a Ray started here with as many CPUs as workers (one actor of 1 CPU each;
the driver process commits). Two figures each:

- index: faces/s of the whole `FaceSearch.index` run, as a user sees it (models loaded, and
  for Ray the actors started, inside the run; the Ray start itself is printed apart);
- describe: faces/s of describing the same photos again once the models are loaded (the
  single process's Describer.stream; the actors' RayDescriber.stream), no storage, and the CPU
  time it took a face (this process's, or the actors' processes'): a cost that holds whatever
  else the machine runs, so 1 / (CPU s a face) is what one free core would give.

The load average (os.getloadavg) is printed before each: on a machine shared with other work
the figures are pessimistic, and N workers cannot beat one process on fewer than N free cores.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from facesearch import FaceSearch, Settings
from facesearch.index.distributed import RayDescriber
from facesearch.pipeline.describer import Describer
from facesearch.training.data import data_dir


def load() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def faces_in(outcomes) -> int:
    return sum(len(outcome[1]) for outcome in outcomes if not isinstance(outcome, Exception))


def describe_line(faces: int, seconds: float, cpu: float) -> None:
    print(f"  describe: {faces} faces in {seconds:.1f} s -> {faces / seconds:.1f} faces/s; "
          f"{cpu / faces * 1000:.0f} CPU ms a face (-> {faces / cpu:.1f} faces/s a free core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--folder", default="celeba/wild")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-"))  # short: Ray's socket paths must fit
    # Ray's files and the token a new Ray requires, here (not /tmp/ray and ~/.ray); set before
    # Ray is imported, which reads them once
    (tmp / "auth_token").write_text(secrets.token_hex(32))
    os.environ.update(RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="token",
                      RAY_AUTH_TOKEN_PATH=str(tmp / "auth_token"), RAY_USAGE_STATS_ENABLED="0")
    try:
        photos_dir = tmp / "photos"
        photos_dir.mkdir()
        photos = []
        for file in sorted((data_dir() / args.folder).glob("*.jpg"))[:args.photos]:
            photos.append(Path(shutil.copy(file, photos_dir / file.name)))
        print(f"{len(photos)} photos of {args.folder}, {os.cpu_count()} CPU cores")

        print(f"single process ({Settings().describe_threads} preparing threads), {load()}")
        with FaceSearch(tmp / "single") as fs:
            start = time.perf_counter()
            report = fs.index([photos_dir])
            seconds = time.perf_counter() - start
        print(f"  index:    {report.faces} faces in {seconds:.1f} s -> {report.faces / seconds:.1f} faces/s")
        describer = Describer(Settings())
        faces_in(describer.stream(photos[:2]))  # models loaded
        start, cpu = time.perf_counter(), time.process_time()
        faces = faces_in(describer.stream(photos))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        describer.close()
        describe_line(faces, seconds, cpu)

        import ray

        for workers in args.workers:
            print(f"Ray, {workers} local worker(s) (1 CPU each), {load()}")
            start = time.perf_counter()
            ray.init(num_cpus=workers, object_store_memory=256 << 20, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            print(f"  Ray started in {time.perf_counter() - start:.1f} s")
            with FaceSearch(tmp / f"ray{workers}") as fs:
                start = time.perf_counter()
                report = fs.index([photos_dir], ray="auto")  # the Ray this process started
                seconds = time.perf_counter() - start
            print(f"  index:    {report.faces} faces in {seconds:.1f} s -> {report.faces / seconds:.1f} "
                  f"faces/s (actors started and models loaded inside)")
            with RayDescriber(Settings(), "auto") as on_ray:
                on_ray.start()
                start, cpu = time.perf_counter(), on_ray.cpu_seconds()
                faces = faces_in(on_ray.stream(photos))
                seconds, cpu = time.perf_counter() - start, on_ray.cpu_seconds() - cpu
            describe_line(faces, seconds, cpu)
            ray.shutdown()
        print(load())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
