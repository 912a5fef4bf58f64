"""A throwaway PostgreSQL server on loopback, for the tests and for .ci/run.

    python tests/pg_cluster.py start DIR   # prints the server's URL (postgresql+psycopg://...)
    python tests/pg_cluster.py stop DIR

The server's files, log and socket live in DIR (made if missing). `initdb` and `pg_ctl` are looked
up on PATH, then in /usr/lib/postgresql/*/bin (Debian's `postgresql` package). PostgreSQL refuses
to run as root, so as root they run as the `postgres` user (which owns DIR). Trust
authentication, 127.0.0.1 only, a free port; fsync off: the data is thrown away.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path


class ClusterError(RuntimeError):
    """PostgreSQL is not installed or would not start (the message says why)."""


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ClusterError(f"{name} not found (install PostgreSQL, e.g. apt-get install postgresql)")
    return found


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError("running as root and there is no `postgres` user to run the server") from None
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], timeout: float = 120) -> None:
    try:
        done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ClusterError(f"{Path(command[0]).name} failed: {error}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ClusterError(f"{Path(command[0]).name} failed: {lines[-1] if lines else done.returncode}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(directory: str | os.PathLike) -> str:
    """Start a server whose files live in `directory`; returns its URL (database `postgres`)."""
    directory = Path(directory).resolve()
    data = directory / "data"
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and _user_exists("postgres"):  # the server's user must own its folder
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    if not (data / "PG_VERSION").exists():
        _run([_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
              "--no-sync"])
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    _run([_binary("pg_ctl"), "-D", str(data), "-l", str(directory / "server.log"), "-w", "-t", "60",
          "-o", options, "start"])
    (directory / "port").write_text(str(port))
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def stop(directory: str | os.PathLike) -> None:
    """Stop the server started in `directory` (fast shutdown)."""
    _run([_binary("pg_ctl"), "-D", str(Path(directory).resolve() / "data"), "-m", "fast", "-w", "stop"])


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            print(start(argv[1]))
        else:
            stop(argv[1])
    except ClusterError as error:
        print(f"pg_cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
