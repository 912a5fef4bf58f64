"""Fitting and measuring the identity space: the calibration of `same_person` and the figures of
the match modes.

    python -m facesearch.training.identity_calibration          # refit, write the JSON, print figures
    python -m facesearch.training.identity_calibration --check  # figures only, nothing written

Every CelebA photo of ../shared/data (aligned and wild) is described end to end, as `facesearch
index` does (decode, detect, align, master vector, identity vector; the largest face), once: the
vectors are cached in `cache/identity_<source>.npz`.

Calibration (models/arcface.py `CALIBRATION_FILE`): logistic regression (Platt scaling) of
"same person" on the cosine of two identity vectors, fitted on the CelebA identities OUTSIDE the
validation split (training.train.validation_mask, share 0.1; those identities are used for
nothing else by this file) with every same-identity pair and as many random different-identity
pairs (so the probabilities assume even odds). Then, the cosine's slope and intercept held
fixed, one offset to the log-odds of the pairs whose gender heads conflict (models.arcface
genders_conflict) is fitted by maximum likelihood on the same pairs (`fit_conflict_offset`), so
pairs whose genders agree keep their probabilities. The operating point is probability 0.5;
its false-accept and false-reject rates, with and without the offset, are measured on the
validation identities' pairs, which the fit never saw, and stored with the constants.

Figures (validation identities only; `facesearch eval` describes only their photos when the
full cache is missing): identity mAP (leave-one-out, training.metrics) in `person` mode
(identity cosine, which is what `match="person"` ranks by) beside the master vector's, and
look-alike mode's top-10 attribute agreement with how many of those hits are the query's own
person (by label), ranked by search.planner.rank_match itself over the gallery (its people
grouped by index.people as one index run would).
"""
from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facesearch.models.arcface import CALIBRATION_FILE, GENDER_CONFLICT_GAP, MALE, VERSION, genders_conflict
from facesearch.search.terms import COLUMNS, probability_matrix
from facesearch.settings import Settings
from facesearch.training.data import labelled_images
from facesearch.training.metrics import LOOKALIKES, ExactSpace, identity_retrieval
from facesearch.training.train import validation_mask

#: The sources described (CelebA, with identities).
CALIBRATION_SOURCES = ("celeba_aligned", "celeba_wild")
#: Share of identities in validation (TrainSettings.validation_share's default).
VALIDATION_SHARE = 0.1


def described(source: str, cache_dir: Path = Path("cache"), settings: Settings | None = None,
              root: Path | None = None, validation_only: bool = False) -> dict:
    """{files, identity (N,), celeba (N, 40), master (N, 364), identity_vectors (N, 512),
    probabilities (N, len(search.terms.COLUMNS)) the face's class probabilities and age as
    stored in an index, validation (N,) bool, photos (photos described)} of the photos of
    `source` (under `root`, default the data folder) in which a face was found (the largest
    face), described end to end with the shipped models; cached in cache_dir (a cache made
    by another master model, detector or parser, or before `probabilities`, is made again). `validation_only`: the validation identities' photos
    alone (a tenth of the work; read from the full cache when there is one)."""
    from facesearch.models.descriptor import shipped_model
    from facesearch.pipeline.describer import Describer, pipeline_version

    settings = settings or Settings.from_env()
    pipeline = np.array(pipeline_version(shipped_model().version, settings))
    for name in [f"identity_{source}.npz"] + ([f"identity_{source}_validation.npz"] if validation_only else []):
        cache = Path(cache_dir) / name
        if cache.exists():
            with np.load(cache) as data:
                if "probabilities" in data.files and "pipeline" in data.files and data["pipeline"] == pipeline:
                    found = {name: data[name] for name in data.files}
                    if validation_only and not found["validation"].all():
                        keep = found["validation"]
                        found = {name: value[keep] if value.shape[:1] == keep.shape else value
                                 for name, value in found.items()}
                    return found
    images = labelled_images(source, root)
    if validation_only:
        chosen = validation_mask(np.array([image.identity for image in images], np.int64),
                                 np.array([image.path.name for image in images]), VALIDATION_SHARE)
        images = [image for image, keep in zip(images, chosen) if keep]
    describer = Describer(settings)
    keep, master, identity, attributes = [], [], [], []
    for n, outcome in enumerate(describer.stream([image.path for image in images])):
        if isinstance(outcome, Exception) or not outcome[1]:
            continue
        keep.append(n)
        master.append(outcome[1][0].vector)
        identity.append(outcome[1][0].identity)
        attributes.append(outcome[1][0].attributes)
    describer.close()
    kept = [images[n] for n in keep]
    labels = np.array([image.identity for image in kept], np.int64)
    files = np.array([image.path.name for image in kept])
    data = {"files": files, "identity": labels,
            "celeba": np.array([image.celeba for image in kept], np.int8),
            "master": np.stack(master).astype(np.float32),
            "identity_vectors": np.stack(identity).astype(np.float32),
            "probabilities": probability_matrix(attributes),
            "validation": validation_mask(labels, files, VALIDATION_SHARE),
            "photos": np.array(len(images)), "pipeline": pipeline}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def pairs(identity: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, same) index pairs: every same-identity pair and as many random different ones."""
    i, j = np.triu_indices(len(identity), k=1)
    same = identity[i] == identity[j]
    positives = np.flatnonzero(same)
    negatives = rng.choice(np.flatnonzero(~same), size=min(len(positives), int((~same).sum())),
                           replace=False)
    chosen = np.concatenate([positives, negatives])
    return i[chosen], j[chosen], same[chosen]


def fit(cosines: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of P(same | cosine) by logistic regression (scikit-learn, almost no
    regularisation)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6).fit(cosines.reshape(-1, 1), same.astype(int))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def fit_conflict_offset(logits: np.ndarray, conflict: np.ndarray, same: np.ndarray) -> float:
    """The offset b maximising the likelihood of `same` (n,) under P = sigmoid(logits + b *
    conflict): a logistic regression on the conflict indicator with the cosine calibration's
    log-odds `logits` (n,) as a fixed offset (scipy's bounded scalar minimiser, b in -20..5)."""
    from scipy.optimize import minimize_scalar

    flag, target = conflict.astype(np.float64), same.astype(np.float64)

    def negative_log_likelihood(b: float) -> float:
        z = logits + b * flag
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    return float(minimize_scalar(negative_log_likelihood, bounds=(-20.0, 5.0), method="bounded").x)


def error_rates(logits: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """False-accept rate (different pairs whose calibrated log-odds `logits` reach 0, the
    operating point's probability 0.5) and false-reject rate (same pairs below it)."""
    return {"false_accept": float((logits[~same] >= 0).mean()),
            "false_reject": float((logits[same] < 0).mean()),
            "same_pairs": int(same.sum()), "different_pairs": int((~same).sum())}


def _gather(cache_dir: Path, root: Path | None = None, validation_only: bool = False
            ) -> dict[str, dict]:
    return {source: described(source, cache_dir, root=root, validation_only=validation_only)
            for source in CALIBRATION_SOURCES}


def _concat(data: dict[str, dict], validation: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity vectors, labels, P(male) of the gender head) of the faces of the split."""
    def joined(key: str) -> np.ndarray:
        return np.concatenate([d[key][d["validation"] == validation] for d in data.values()])

    return joined("identity_vectors"), joined("identity"), joined("probabilities")[:, COLUMNS.index(MALE)]


def _pairs_of(data: dict[str, dict], validation: bool, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(cosines, genders conflict, same) of the split's calibration pairs (`pairs`), with its
    number of identities and faces."""
    vectors, labels, male = _concat(data, validation)
    i, j, same = pairs(labels, rng)
    return (np.einsum("nd,nd->n", vectors[i], vectors[j]), genders_conflict(male[i], male[j]), same,
            int(len(np.unique(labels))), int(len(labels)))


def calibrate(cache_dir: Path = Path("cache"), seed: int = 0) -> dict:
    """Fit the calibration (the module's docstring) and measure it on validation pairs; returns
    the JSON record (slope, intercept, conflict_offset, threshold, how it was fitted, measured
    rates with the offset and, as `*_without_conflict_offset`, without it)."""
    data = _gather(cache_dir)
    rng = np.random.default_rng(seed)
    cosines, conflict, same, identities, faces = _pairs_of(data, False, rng)
    slope, intercept = fit(cosines, same)
    offset = fit_conflict_offset(slope * cosines + intercept, conflict, same)
    held, held_conflict, held_same, held_identities, held_faces = _pairs_of(data, True, rng)

    def rates(c: np.ndarray, g: np.ndarray, s: np.ndarray) -> dict:
        plain = error_rates(slope * c + intercept, s)
        return {**error_rates(slope * c + intercept + offset * g, s),
                "false_accept_without_conflict_offset": plain["false_accept"],
                "false_reject_without_conflict_offset": plain["false_reject"],
                "conflicting_pairs": {"same": int((g & s).sum()), "different": int((g & ~s).sum())}}

    return {"slope": slope, "intercept": intercept, "threshold": -intercept / slope,
            "conflict_offset": offset, "conflict_threshold": -(intercept + offset) / slope,
            "gender_conflict_gap": GENDER_CONFLICT_GAP,
            "probability_at_threshold": 0.5, "model": VERSION,
            "fitted_on": {"sources": list(CALIBRATION_SOURCES),
                          "identities": "CelebA identities outside the validation split "
                                        f"(training.train.validation_mask, share {VALIDATION_SHARE})",
                          "n_identities": identities, "faces": faces, **rates(cosines, conflict, same)},
            "measured_on": {"identities": "the validation identities (never seen by the fit)",
                            "n_identities": held_identities, "faces": held_faces,
                            **rates(held, held_conflict, held_same)},
            "method": "logistic regression (Platt) of same/different on the identity cosine, "
                      "every same pair and as many random different pairs (even odds), seed "
                      f"{seed}; then, slope and intercept fixed, the log-odds offset of pairs "
                      "whose gender heads' P(male) differ by more than gender_conflict_gap "
                      "(maximum likelihood); refit with python -m facesearch.training.identity_calibration",
            "fitted": datetime.now(UTC).strftime("%Y-%m-%d")}


class _Faces:
    """A gallery's faces as the planner's Catalog: every id has a row; class probabilities and
    persons (index.people, -1 none) from arrays."""

    def __init__(self, probabilities: np.ndarray, persons: np.ndarray):
        self._probabilities, self._persons = probabilities, persons

    def count(self) -> int:
        return len(self._probabilities)

    def probabilities(self, ids: np.ndarray, names) -> tuple[np.ndarray, np.ndarray]:
        return np.ones(len(ids), bool), self._probabilities[np.asarray(ids, np.int64)]

    def persons(self, ids: np.ndarray) -> np.ndarray:
        return self._persons[np.asarray(ids, np.int64)]

    def members(self, persons) -> np.ndarray:
        return np.flatnonzero(np.isin(self._persons, list(persons)))


def gallery_people(identity_vectors: np.ndarray) -> np.ndarray:
    """(n,) int64 person of each face (-1 none) when a gallery is indexed in one run
    (index.people.group with the shipped settings and grouping threshold)."""
    from facesearch.index.people import group, grouping_threshold
    from facesearch.settings import DEFAULTS

    _, clusters = group(identity_vectors, np.empty((0, identity_vectors.shape[1]), np.float32),
                        grouping_threshold(), DEFAULTS.people_min_faces, DEFAULTS.people_min_samples)
    return clusters


#: Photos judged by eye (contact sheets of the look-alike mode's own-person hits beside their
#: identity's other photos) to show someone other than their CelebA identity: label noise.
LABEL_NOISE_FILE = Path(__file__).with_name("identity_label_noise.csv")


def label_noise(files: np.ndarray) -> np.ndarray:
    """(n,) bool: which of these file names LABEL_NOISE_FILE lists (judged another person than
    their CelebA identity)."""
    import csv

    with open(LABEL_NOISE_FILE, newline="") as handle:
        listed = {row["file"] for row in csv.DictReader(handle)}
    return np.isin(np.asarray(files), list(listed))


def lookalike_mode(master: np.ndarray, identity_vectors: np.ndarray, labels: np.ndarray,
                   attributes: np.ndarray, probabilities: np.ndarray, threshold: float,
                   k: int = LOOKALIKES, files: np.ndarray | None = None) -> dict[str, float]:
    """Look-alike mode on a gallery as `FaceSearch.query(image=..., match="look-alike")` runs it
    (search.planner.rank_match over the gallery, its people found by index.people as one index
    run would; the query face is in the gallery, as an indexed photo is): for every face, the
    share of the 40 attributes (labels) its k hits share with it, and the share of hits that
    are in fact its person (by label). Also both figures over the tuning half of the queries
    (even positions: search.planner's LOOKALIKE_* were chosen on it) and the test half (odd
    positions, never used to choose), and, given `files`, the own-person share with the photos
    of LABEL_NOISE_FILE counted as people of their own."""
    from facesearch.search.planner import Request, rank_match

    space, identities = ExactSpace(master), ExactSpace(identity_vectors)
    catalog = _Faces(probabilities, gallery_people(identity_vectors))
    nearest = np.zeros((len(labels), k), np.int64)
    for n in range(len(labels)):
        request = Request(k=k, face=master[n], identity=identity_vectors[n], match="look-alike",
                          attributes=probabilities[n])
        nearest[n] = [i for _, i in rank_match(request, space, identities, catalog).candidates]
    agreement = (attributes[:, None, :] == attributes[nearest]).mean(axis=(1, 2))
    own = labels[nearest] == labels[:, None]
    found = {"lookalike_agreement": float(agreement.mean()), "own_person_share": float(own.mean()),
             "queries_with_own_person": int(own.any(axis=1).sum()), "queries": int(len(labels))}
    for name, half in (("tuning", slice(0, None, 2)), ("test", slice(1, None, 2))):
        found[f"{name}_agreement"] = float(agreement[half].mean())
        found[f"{name}_own_person_share"] = float(own[half].mean())
    if files is not None:
        relabelled = np.where(label_noise(files), -1 - np.arange(len(labels)), labels)
        found["own_person_share_without_label_noise"] = float(
            (relabelled[nearest] == relabelled[:, None]).mean())
    return found


def default_mode_rank1(master: np.ndarray, identity_vectors: np.ndarray, labels: np.ndarray,
                       threshold: float, male: np.ndarray | None = None) -> float:
    """Default mode's rank-1 (leave-one-out): the first hit is the most similar face by identity
    when it is judged the query's person (cosine >= threshold; with `male`, the faces' P(male)
    (n,), the shipped calibration's conflict_threshold for a pair whose genders conflict), else
    the best look-alike by master similarity; the share of queries whose first hit is their
    person."""
    from facesearch.models.arcface import calibration

    by_identity = identity_vectors @ identity_vectors.T
    by_master = master @ master.T
    np.fill_diagonal(by_identity, -np.inf)
    np.fill_diagonal(by_master, -np.inf)
    top = by_identity.argmax(1)
    cosine = by_identity[np.arange(len(labels)), top]
    judged = cosine >= threshold
    if male is not None:
        judged &= ~genders_conflict(male, male[top]) | (cosine >= calibration().conflict_threshold)
    first = np.where(judged, top, by_master.argmax(1))
    return float((labels[first] == labels).mean())


def figures(cache_dir: Path = Path("cache"), threshold: float | None = None,
            root: Path | None = None) -> dict[str, dict]:
    """Per source, on validation identities: identity mAP / rank-1 in person mode (identity
    cosine) and with the master vector, default mode's rank-1, and look-alike mode's agreement
    and own-person share."""
    if threshold is None:
        threshold = shipped_threshold()
    out = {}
    for source, d in _gather(cache_dir, root, validation_only=True).items():
        v = d["validation"]
        out[source] = {
            "person": identity_retrieval(d["identity_vectors"][v], d["identity"][v]),
            "master": identity_retrieval(d["master"][v], d["identity"][v]),
            "lookalike": lookalike_mode(d["master"][v], d["identity_vectors"][v], d["identity"][v],
                                        d["celeba"][v], d["probabilities"][v], threshold,
                                        files=d["files"][v]),
            "default_rank1": default_mode_rank1(d["master"][v], d["identity_vectors"][v],
                                                d["identity"][v], threshold,
                                                d["probabilities"][v][:, COLUMNS.index(MALE)]),
            "faces": int(v.sum()), "photos_described": int(d["photos"])}
    return out


def shipped_threshold() -> float:
    """The shipped calibration's threshold (cosine)."""
    from facesearch.models.arcface import calibration

    return calibration().threshold


#: Anchors printed beside the match-mode rows (`facesearch eval`, validation identities of all
#: sources: the model card's figures).
ANCHORS = {"dlib_map": 0.838, "master_map": 0.506}


def format_modes(found: dict[str, dict]) -> str:
    """The match modes' rows of `facesearch eval` (figures() per source) as a text table."""
    lines = [f"{'match modes (validation identities)':<46} {'value':>11}  anchor / target", "-" * 104]
    for source, f in found.items():
        where = "aligned crops" if source == "celeba_aligned" else "wild photos, end to end"
        lines += [
            f"{'person: identity mAP, ' + where:<46} {f['person']['mAP']:>11.3f}  "
            f"target >= {0.93 if source == 'celeba_aligned' else 0.90}; dlib {ANCHORS['dlib_map']}, "
            f"master vector here {f['master']['mAP']:.3f} (all sources {ANCHORS['master_map']})",
            f"{'  person: rank-1':<46} {f['person']['rank1']:>11.1%}",
            f"{'  default: rank-1':<46} {f['default_rank1']:>11.1%}  target within 2 points of person's",
            f"{'look-alike: top-10 attribute agreement':<46} {f['lookalike']['lookalike_agreement']:>11.3f}  target >= 0.82",
            f"{'  look-alike hits of the own person':<46} {f['lookalike']['own_person_share']:>11.2%}  "
            f"target 0 ({f['lookalike']['queries_with_own_person']} of {f['lookalike']['queries']} queries had one)",
            f"{'  agreement, tuning / test half of queries':<46} "
            f"{f['lookalike']['tuning_agreement']:>5.3f} / {f['lookalike']['test_agreement']:.3f}  "
            f"own person {f['lookalike']['tuning_own_person_share']:.2%} / {f['lookalike']['test_own_person_share']:.2%}",
            f"{'  own person, label noise set aside':<46} "
            f"{f['lookalike'].get('own_person_share_without_label_noise', float('nan')):>11.2%}  "
            "(photos judged another person: training/identity_label_noise.csv)",
            f"{'  faces (photos described)':<46} {f['faces']:>11}  ({int(f['photos_described'])} photos of {source} described)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Refit and write the calibration (unless --check), then print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="measure only; write nothing")
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    args = parser.parse_args(argv)
    record = calibrate(args.cache)
    print(json.dumps(record, indent=2))
    if not args.check:
        CALIBRATION_FILE.write_text(json.dumps(record, indent=2) + "\n")
        print(f"written: {CALIBRATION_FILE}")
    print(format_modes(figures(args.cache, record["threshold"])))


if __name__ == "__main__":
    main()
