"""Shared fixtures: the labelled photo folder, one small index built once, one describer.

The photos are read from ../shared/data (relative to the repository root) or $FACESEARCH_DATA;
they are copied only into pytest's temporary folders, never into the repository. Tests that
need them are skipped, with the reason, when the folder is missing.

The model weights may be a placeholder: tests check structure, invariants and behaviour, never
particular attribute values or accuracy.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from facesearch import FaceSearch
from facesearch.settings import ENV
from facesearch.index.indexer import IndexReport

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get(ENV["data_dir"]) or REPO_ROOT / ".." / "shared" / "data").resolve()

#: Wild photos (whole scenes) of the shared index: the first 11 of celeba/wild, all with one
#: clear face, plus 032591.jpg, which shows two people (a man in sunglasses, a child behind).
INDEX_PHOTOS: tuple[str, ...] = (
    "000461.jpg", "000711.jpg", "000987.jpg", "001004.jpg", "001367.jpg", "001414.jpg",
    "002173.jpg", "002184.jpg", "002767.jpg", "003049.jpg", "003628.jpg", "032591.jpg",
)
#: Wild photos with two different people whose faces the detector should both find (found by
#: scanning celeba/wild; boxes overlap little or not at all).
MULTI_FACE_PHOTOS: tuple[str, ...] = ("032591.jpg", "156251.jpg")


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment() -> Iterable[None]:
    """No test reads a user's index, database or Ray settings from the environment."""
    saved = {name: os.environ.pop(name, None)
             for name in (ENV["index_dir"], ENV["db_url"], ENV["ray_address"])}
    yield
    for name, value in saved.items():
        if value is not None:
            os.environ[name] = value


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "celeba" / "wild").is_dir():
        pytest.skip(f"face data not found at {DATA_DIR} (set {ENV['data_dir']} to the shared data folder)")
    return DATA_DIR


def sample(folder: Path, n: int, pattern: str = "*.jpg") -> list[Path]:
    """n files spread evenly over a folder's sorted listing (deterministic)."""
    files = sorted(folder.glob(pattern))
    assert len(files) >= n, f"{folder} has only {len(files)} files"
    return files[:: len(files) // n][:n]


def copy_photos(data_dir: Path, names: Iterable[str], dest: Path) -> list[Path]:
    """Copy celeba/wild photos into `dest` (created); returns the copies."""
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(data_dir / "celeba" / "wild" / name, dest / name)) for name in names]


@dataclass
class BuiltIndex:
    fs: FaceSearch
    index_dir: Path
    db: Path
    photos: list[Path]
    report: IndexReport


@pytest.fixture(scope="session")
def built_index(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterable[BuiltIndex]:
    """INDEX_PHOTOS copied into db/ and indexed once. Read-only: do not change it in tests."""
    root = tmp_path_factory.mktemp("shared_index")
    photos = copy_photos(data_dir, INDEX_PHOTOS, root / "db")
    fs = FaceSearch(root / "index")
    report = fs.index([root / "db"])
    yield BuiltIndex(fs=fs, index_dir=root / "index", db=root / "db", photos=photos, report=report)
    fs.close()


@pytest.fixture(scope="session")
def describer(tmp_path_factory: pytest.TempPathFactory) -> FaceSearch:
    """A FaceSearch used only for describe() (which never touches its index)."""
    return FaceSearch(tmp_path_factory.mktemp("describer") / "index")


def rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def facesearch_command() -> list[str]:
    """The command line that runs the CLI in a fresh interpreter (facesearch/__main__.py)."""
    return [sys.executable, "-m", "facesearch"]


def upgrade_to(url: str, revision: str) -> None:
    """Run facesearch's Alembic migrations on the database at `url` up to `revision` (an older
    schema, to test what an upgrade does to data written under it)."""
    from alembic import command
    from alembic.config import Config

    from facesearch.index.store import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, revision)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterable[str]:
    """HOST:PORT of a Ray cluster on this machine (a head node and a worker node, 1 CPU each),
    this process set up to connect to it (its token in RAY_AUTH_*): $FACESEARCH_TEST_RAY_ADDRESS
    with the token file $FACESEARCH_TEST_RAY_TOKEN (.ci/run starts one), else one started here
    (tests/ray_cluster.py) and stopped at the end. Skipped, saying why, without Ray or a cluster."""
    import ray_cluster

    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("Ray tests need Ray: pip install -e '.[ray]'")
    address = os.environ.get("FACESEARCH_TEST_RAY_ADDRESS")
    token = os.environ.get("FACESEARCH_TEST_RAY_TOKEN")
    directory = None
    if not address:
        directory = tmp_path_factory.mktemp("ray")
        try:
            address = ray_cluster.start(directory)
        except ray_cluster.ClusterError as error:
            pytest.skip(f"no Ray cluster to test against ({error}); set FACESEARCH_TEST_RAY_ADDRESS "
                        "(and FACESEARCH_TEST_RAY_TOKEN, its token file) to use one")
        token = ray_cluster.driver_environment(directory)["RAY_AUTH_TOKEN_PATH"]
    try:
        with pytest.MonkeyPatch.context() as patch:
            if token:  # before Ray is imported: it reads its configuration once, on import
                patch.setenv("RAY_AUTH_MODE", "token")
                patch.setenv("RAY_AUTH_TOKEN_PATH", token)
                if "ray" in sys.modules:  # imported before: read it again, as ray.init does
                    from ray._raylet import Config
                    Config.initialize("")
            yield address
    finally:
        if directory is not None:
            ray_cluster.stop(directory)
