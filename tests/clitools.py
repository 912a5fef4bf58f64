"""Running the `facesearch` command in tests, and checking its one-line errors."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run(command: list[str], *args: str | Path, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess:
    """Run a command (with FACESEARCH_DEBUG unset, so errors stay one line) and capture it."""
    environment = {k: v for k, v in os.environ.items() if k != "FACESEARCH_DEBUG"}
    environment.update(env or {})
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess) -> str:
    """A failure: non-zero exit, no traceback, stderr exactly one line `error: ...`."""
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]
