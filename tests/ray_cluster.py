"""A throwaway Ray cluster on this machine (a head node and worker nodes), for the tests and .ci/run.

    python tests/ray_cluster.py start DIR   # prints the cluster's address (127.0.0.1:PORT)
    python tests/ray_cluster.py stop DIR

A driver connects with `ray.init(address)` in an environment holding `driver_environment(DIR)`
(Ray's token authentication: RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH=DIR/auth_token).

Each node is its own `ray start --block` process (its own process group, pid kept in DIR/pids),
with its own temporary folder under DIR, 1 CPU and a small object store: the second node joins
the head through its address as a node on another machine would. Ports are picked free on
127.0.0.1, so two clusters (two test runs) do not collide. Ray itself advertises the machine's own
address instead of 127.0.0.1 (it does so for any node started on loopback); connecting through
127.0.0.1 works. Since Ray listens on every interface, the cluster requires a token made for it
(Ray's token authentication, the default of new Ray clusters), kept in DIR. `stop` ends exactly these processes (SIGTERM, which `ray start --block` passes on
to the node's processes; SIGKILL to their process groups after a grace period), never other Ray
clusters on the machine (`ray stop` would end every one).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: What `ray start` prints once a node is up.
_STARTED = "Ray runtime started"


class ClusterError(RuntimeError):
    """Ray is not installed or a node would not start (the message says why)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_command() -> list[str]:
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise ClusterError("the `ray` command is not installed (pip install -e '.[ray]')")
    return [ray]


def driver_environment(directory: str | os.PathLike) -> dict[str, str]:
    """The environment variables a process needs to connect to the cluster started in
    `directory` (its token)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(directory).resolve() / "auth_token")}


def _start_node(directory: Path, name: str, arguments: list[str], timeout: float) -> int:
    """Start one node (`ray start --block ...`) logging to DIR/NAME.log; its pid once it is up."""
    log = directory / f"{name}.log"
    environment = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_TOKEN"}
    environment.update(driver_environment(directory), RAY_USAGE_STATS_ENABLED="0")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*_ray_command(), "start", "--block", "--disable-usage-stats",
             "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--object-store-memory={256 << 20}",
             f"--temp-dir={directory / name}", f"--dashboard-agent-listen-port={_free_port()}",
             f"--dashboard-agent-grpc-port={_free_port()}", f"--metrics-export-port={_free_port()}",
             f"--runtime-env-agent-port={_free_port()}", *arguments],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True)
    with open(directory / "pids", "a") as pids:
        pids.write(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if _STARTED in text:
            return process.pid
        if process.poll() is not None:
            lines = [line for line in text.splitlines() if line.strip()]
            raise ClusterError(f"ray {name} node exited ({process.returncode}): "
                               f"{lines[-1] if lines else 'no output'}")
        time.sleep(0.5)
    raise ClusterError(f"ray {name} node did not start within {timeout:.0f} s (see {log})")


def start(directory: str | os.PathLike, workers: int = 1, timeout: float = 120) -> str:
    """Start a head node and `workers` worker nodes (1 CPU each) whose files live in
    `directory` (made if missing); returns the head's address, "127.0.0.1:PORT". Raises
    ClusterError (and stops what it started) if Ray is missing or a node does not come up."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    token = Path(driver_environment(directory)["RAY_AUTH_TOKEN_PATH"])
    token.touch(mode=0o600)
    token.write_text(secrets.token_hex(32))
    port = _free_port()
    try:
        _start_node(directory, "head", ["--head", f"--port={port}", "--include-dashboard=false",
                                        f"--dashboard-port={_free_port()}"], timeout)
        for number in range(workers):
            _start_node(directory, f"worker{number + 1}", [f"--address=127.0.0.1:{port}"], timeout)
    except BaseException:
        stop(directory)
        raise
    address = f"127.0.0.1:{port}"
    (directory / "address").write_text(address)
    return address


def stop(directory: str | os.PathLike, grace: float = 30) -> None:
    """Stop the nodes started in `directory` (workers first), by the pids kept there."""
    pids_file = Path(directory) / "pids"
    if not pids_file.exists():
        return
    pids = [int(line) for line in pids_file.read_text().split()][::-1]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        try:  # whatever the node left behind in its process group
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    pids_file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python tests/ray_cluster.py start|stop DIR")
    try:
        if sys.argv[1] == "start":
            print(start(sys.argv[2]))
        else:
            stop(sys.argv[2])
    except ClusterError as error:
        sys.exit(f"ray_cluster: {error}")
