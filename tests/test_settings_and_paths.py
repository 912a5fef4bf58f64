"""One Settings object for every knob; one query path for the API, the evaluation and the
benchmarks; a long-lived FaceSearch sees what another process indexed."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clitools import assert_one_line_error, run
from conftest import BuiltIndex, copy_photos
from facesearch import FaceSearch, FaceSearchError, Settings
from facesearch.search import planner
from facesearch.search.terms import probability_matrix
from facesearch.settings import ENV, SettingWarning
from facesearch.training import text_eval


def test_every_variable_maps_to_a_field_and_parses() -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(ENV) == set(fields) and len(set(ENV.values())) == len(ENV)
    assert all(variable.startswith("FACESEARCH_") for variable in ENV.values())
    environ = {ENV["index_dir"]: "/tmp/x", ENV["commit_every"]: "3", ENV["compression"]: "PQ",
               ENV["min_detection_score"]: "0.7", ENV["debug"]: "yes", ENV["k"]: ""}
    settings = Settings.from_env(environ, k=4)
    assert settings.index_dir == Path("/tmp/x") and settings.commit_every == 3
    assert settings.compression == "pq" and settings.min_detection_score == 0.7 and settings.debug
    assert settings.k == 4  # an override wins, an empty variable counts as unset
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("environ, message", [
    ({"FACESEARCH_COMMIT_EVERY": "lots"}, "FACESEARCH_COMMIT_EVERY='lots' is not a whole number"),
    ({"FACESEARCH_COMMIT_EVERY": "0"}, "commit_every must be at least 1"),
    ({"FACESEARCH_COMPRESSION": "zip"}, "FACESEARCH_COMPRESSION='zip': use one of none, sq8, pq"),
    ({"FACESEARCH_DEBUG": "maybe"}, "FACESEARCH_DEBUG='maybe' is not 1/0, true/false"),
])
def test_bad_settings_are_one_line_errors(environ: dict, message: str) -> None:
    with pytest.raises(FaceSearchError, match=message.replace("(", r"\(")):
        Settings.from_env(environ)


def test_a_bad_variable_is_one_line_at_the_command_line(facesearch_command: list[str],
                                                        tmp_path: Path) -> None:
    done = run(facesearch_command, "info", cwd=tmp_path, env={"FACESEARCH_IVF_THRESHOLD": "many"})
    assert "FACESEARCH_IVF_THRESHOLD='many'" in assert_one_line_error(done)


def test_settings_reach_the_index(built_index: BuiltIndex) -> None:
    settings = Settings(k=2, db_url=None)
    with FaceSearch(built_index.index_dir, settings=settings) as fs:
        assert fs.index_dir == built_index.index_dir and fs.settings.k == 2
        assert len(fs.query(text="smiling")) == 2  # k from the settings


def test_the_api_and_the_evaluation_rank_through_the_planner(built_index: BuiltIndex,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """FaceSearch.query and eval-text's gallery both call search.planner.rank: the evaluation
    measures what users run."""
    calls = []
    real = planner.rank

    def spy(request, centres, space, catalog, identity=None):
        calls.append(type(space).__name__)
        return real(request, centres, space, catalog, identity)

    monkeypatch.setattr(planner, "rank", spy)
    monkeypatch.setattr("facesearch.api.rank", spy)
    monkeypatch.setattr(text_eval, "rank", spy)
    fs = built_index.fs
    hits = fs.query(text="smiling woman", k=3)
    stored = fs.vectors.reconstruct(np.arange(len(fs.vectors)))
    rows = fs.store.faces_by_vector_ids(range(len(fs.vectors)))
    probabilities = np.stack([probability_matrix([rows[i][0].attributes])[0]
                              for i in range(len(fs.vectors))])
    gallery = text_eval.Gallery(stored, probabilities, np.zeros((len(stored), 40), np.int8),
                                np.array([rows[i][1].path for i in range(len(stored))]),
                                np.arange(len(stored)))
    monkeypatch.setattr(text_eval.Gallery, "centres", property(lambda self: fs._model.centres))
    understood = [hit.face_id for hit in hits]
    ranked = gallery.rank(hits.understood.terms, 3)
    assert calls == ["VectorSpace", "Gallery"]
    # the same faces in the same order: FAISS Flat and the gallery's exact search agree
    assert [rows[int(i)][0].id for i in ranked] == understood


def test_a_long_lived_facesearch_sees_another_processs_run(data_dir: Path, tmp_path: Path,
                                                           facesearch_command: list[str]) -> None:
    copy_photos(data_dir, ["000461.jpg"], tmp_path / "db")
    with FaceSearch(tmp_path / "index") as fs:
        fs.index([tmp_path / "db"])
        assert len(fs.query(text="a person smiling", k=10)) == 1
        copy_photos(data_dir, ["000711.jpg", "000987.jpg"], tmp_path / "db")
        done = subprocess.run(facesearch_command + ["index", str(tmp_path / "db"), "--index",
                                                    str(tmp_path / "index"), "-q"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert len(fs.query(text="a person smiling", k=10)) == 3  # picked up without reopening
        assert fs.refresh() is False  # already fresh
    shutil.rmtree(tmp_path / "index")


def test_a_misspelt_variable_is_warned_about_once(facesearch_command: list[str], tmp_path: Path) -> None:
    """FACESEARCH_INDX names no setting: one warning naming the closest variable, not an error,
    and only once; the test suite's own FACESEARCH_TEST_* variables are not warned about."""
    environ = {"FACESEARCH_COMIT_EVERY": "5", "FACESEARCH_TEST_ANYTHING": "1", "FACESEARCH_K": "3"}
    with pytest.warns(SettingWarning) as caught:
        settings = [Settings.from_env(environ) for _ in range(2)]
    assert [s.k for s in settings] == [3, 3]
    assert [str(w.message) for w in caught] == [
        "FACESEARCH_COMIT_EVERY is not a facesearch setting and is ignored: did you mean FACESEARCH_COMMIT_EVERY?"]
    done = run(facesearch_command, "people", "--index", tmp_path / "none", cwd=tmp_path,
               env={"FACESEARCH_INDX": str(tmp_path)})
    assert done.stderr.splitlines()[0] == (
        "warning: FACESEARCH_INDX is not a facesearch setting and is ignored: did you mean FACESEARCH_INDEX?")
    assert done.stderr.count("FACESEARCH_INDX") == 1
