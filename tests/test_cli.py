"""The `facesearch` command, run as a real subprocess: output, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from clitools import assert_one_line_error, run
from conftest import copy_photos
from facesearch.settings import ENV
from facesearch.spec import REGIONS

CLI_PHOTOS = ("000461.jpg", "000711.jpg", "000987.jpg", "001004.jpg", "001367.jpg", "001414.jpg")
HIT_KEYS = {"rank", "score", "path", "face_id", "bbox", "regions", "attributes"}


@dataclass
class CliIndex:
    root: Path
    db: Path
    index: Path
    indexed: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def cli_index(facesearch_command: list[str], data_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> CliIndex:
    root = tmp_path_factory.mktemp("cli")
    copy_photos(data_dir, CLI_PHOTOS, root / "db")
    done = run(facesearch_command, "index", "db", "--index", "idx", "--quiet", cwd=root)
    assert done.returncode == 0, done.stderr
    return CliIndex(root, root / "db", root / "idx", done)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("facesearch")
    assert script.exists(), f"no `facesearch` console script next to {sys.executable}"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "query" in done.stdout and "index" in done.stdout


def test_index_then_info_through_the_environment_variable(cli_index: CliIndex, facesearch_command: list[str],
                                                          tmp_path: Path) -> None:
    n = len(CLI_PHOTOS)
    assert f"{n} photos: {n} indexed" in cli_index.indexed.stdout
    assert "Traceback" not in cli_index.indexed.stderr
    # No --index: FACESEARCH_INDEX names the index (run from elsewhere, so no default is found).
    done = run(facesearch_command, "info", cwd=tmp_path, env={ENV["index_dir"]: str(cli_index.index)})
    assert done.returncode == 0, done.stderr
    fields = dict(line.strip().split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert fields["photos"] == str(n) and fields["faces"] == str(n) and fields["failed"] == "0"
    assert not (tmp_path / "indexes").exists()
    done = run(facesearch_command, "info", "--json", "--index", cli_index.index, cwd=tmp_path)
    details = json.loads(done.stdout)
    assert (details["photos"], details["faces"], details["vectors"]) == (n, n, n)


def test_query_by_image_as_json(cli_index: CliIndex, facesearch_command: list[str]) -> None:
    photo = cli_index.db / "000711.jpg"
    done = run(facesearch_command, "query", "--image", photo, "--json", "-k", "5", "--index", cli_index.index,
               cwd=cli_index.root)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert isinstance(hits, list) and len(hits) == 5
    for rank, hit in enumerate(hits, start=1):
        assert HIT_KEYS <= set(hit) and hit["rank"] == rank
        assert len(hit["bbox"]) == 4 and list(hit["regions"]) == list(REGIONS)
        assert "Black_Hair" in hit["attributes"] and "age" in hit["attributes"]
    assert hits[0]["path"] == str(photo.resolve())
    assert hits[0]["score"] == pytest.approx(7.0, abs=1e-3)
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_query_by_image_as_a_table(cli_index: CliIndex, facesearch_command: list[str]) -> None:
    # FACESEARCH_INDEX instead of --index, and the default k (10) capped by the 6 faces stored.
    done = run(facesearch_command, "query", "-i", cli_index.db / "001004.jpg", cwd=cli_index.root,
               env={ENV["index_dir"]: str(cli_index.index)})
    assert done.returncode == 0, done.stderr
    assert "001004.jpg" in done.stdout and "Traceback" not in done.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(done.stdout)


def test_query_by_text_as_json(cli_index: CliIndex, facesearch_command: list[str]) -> None:
    done = run(facesearch_command, "query", "--text", "black hair, smiling", "--json", "-k", "5",
               "--index", cli_index.index, cwd=cli_index.root)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert len(hits) == 5 and all(HIT_KEYS <= set(hit) for hit in hits)
    assert [hit["rank"] for hit in hits] == [1, 2, 3, 4, 5]
    assert len({hit["face_id"] for hit in hits}) == 5


def test_query_with_a_file_that_is_not_an_image(cli_index: CliIndex, facesearch_command: list[str],
                                                tmp_path: Path) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo\n")
    done = run(facesearch_command, "query", "--image", fake, "--index", cli_index.index, cwd=tmp_path)
    assert "holiday.jpg" in assert_one_line_error(done)


def test_query_against_a_missing_index(facesearch_command: list[str], data_dir: Path, tmp_path: Path) -> None:
    done = run(facesearch_command, "query", "--image", data_dir / "celeba" / "wild" / "000461.jpg",
               "--index", tmp_path / "no-such-index", cwd=tmp_path)
    assert "no index" in assert_one_line_error(done)


def test_k_must_be_positive(cli_index: CliIndex, facesearch_command: list[str]) -> None:
    done = run(facesearch_command, "query", "--image", cli_index.db / "000461.jpg", "-k", "0",
               "--index", cli_index.index, cwd=cli_index.root)
    assert_one_line_error(done)


def test_index_a_folder_with_bad_files(facesearch_command: list[str], data_dir: Path, tmp_path: Path) -> None:
    copy_photos(data_dir, ("000461.jpg", "000711.jpg"), tmp_path / "db")
    (tmp_path / "db" / "notes.jpg").write_text("shopping list: milk, eggs\n")
    (tmp_path / "db" / "sub").mkdir()
    (tmp_path / "db" / "sub" / "empty.png").write_bytes(b"")
    done = run(facesearch_command, "index", "db", "--index", "idx", "-q", cwd=tmp_path)
    assert done.returncode != 0, "failures must give a non-zero exit code"
    assert "Traceback" not in done.stderr + done.stdout
    assert "notes.jpg" in done.stderr and "empty.png" in done.stderr
    assert "2 failed" in done.stdout
    # The good photos are in the index all the same.
    done = run(facesearch_command, "info", "--json", "--index", "idx", cwd=tmp_path)
    details = json.loads(done.stdout)
    assert details["faces"] == details["vectors"] == 2
    assert sorted(Path(path).name for path, _ in details["failed"]) == ["empty.png", "notes.jpg"]
    done = run(facesearch_command, "query", "--image", tmp_path / "db" / "000461.jpg", "--json", "-k", "2",
               "--index", "idx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {Path(hit["path"]).name for hit in json.loads(done.stdout)} == {"000461.jpg", "000711.jpg"}


def test_index_a_missing_folder(facesearch_command: list[str], tmp_path: Path) -> None:
    done = run(facesearch_command, "index", tmp_path / "no-such-folder", "--index", tmp_path / "idx",
               cwd=tmp_path)
    assert "no-such-folder" in assert_one_line_error(done)
