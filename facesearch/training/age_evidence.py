"""The Young attribute's evidence on the age groups (models/network_layout.AGE_YOUNG_EVIDENCE):
fitted on the descriptor's training faces, its weight chosen there, measured on the validation
ones, and written into the weights when asked.

    python -m facesearch.training.age_evidence [--cache cache] [--json] [--export]

Why: the age-group heads learnt ages from UTKFace's tight face chips alone. On CelebA's photos
(hats, glasses, make-up, wider framing) they read many young people old: a new user's trial saw
a man of about 30 in a cap and large glasses read 62 while the network's own Young attribute
said 0.84, and `a man over 60 with glasses` listed him. The Young head learnt from CelebA's
photos themselves. Treating its output as evidence on the age group lets it pull an unsure age
reading its way.

1. Faces: the prepared caches of training/data.py (`build_cache`, the shipped detector and
   parser) of UTKFace (true ages) and of CelebA aligned and in the wild (identities and the
   Young label), split by identity as the descriptor was (train.validation_mask, share 0.1).
2. The shipped network's classifier logits on them, face and mirror image averaged, as
   describing runs it (descriptor.embed_faces; cached in the cache folder by model version).
3. Evidence (train.fit_evidence, which training runs too): for each age group, the mean and standard deviation of the logit
   of the network's P(Young) over the UTKFace training faces whose true age is in the group.
4. Weight (`choose_weight`, among WEIGHTS, on training faces only): the one with the lowest sum,
   in years, of the UTKFace training faces' age MAE and the median, over CelebA's training
   identities with 3 or more photos, of the standard deviation of one person's ages (photos of
   one celebrity span a few years; an age reading that jumps by decades between them is wrong).
5. Figures (`figures`) on the validation faces with and without the evidence: UTKFace age MAE
   (all, by age group) and age-group accuracy; on CelebA's validation identities the median
   within-person standard deviation, the standard deviation of all ages (so a gain from
   squeezing every age toward the middle would show), the share of faces CelebA labels Young
   read 40 or older, and of faces labelled not Young read under 30.

`--export` writes the evidence and weight into models/weights/descriptor.safetensors (the
network, its centres and mean mesh unchanged; the version's digest is made again from the
weights, train.weights_digest) and points the emotion head's metadata at the new version (its
inputs, the backbone features and master vectors, do not change).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facesearch.models.network_layout import HEADS, YOUNG, class_probabilities
from facesearch.settings import DEFAULTS
from facesearch.spec import AGE_GROUPS
from facesearch.training.data import UNKNOWN, age_group, decode_crops, prepared_dir
from facesearch.training.train import fit_evidence, validation_mask

#: The sources read: UTKFace for ages, CelebA for identities and the Young label.
SOURCES = ("utkface", "celeba_aligned", "celeba_wild")
#: Weights tried (0: the evidence not used).
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Share of identities in validation (as the descriptor's training: TrainSettings.validation_share).
VALIDATION_SHARE = 0.1
#: A CelebA identity counts toward the within-person spread with at least this many photos.
MIN_PHOTOS = 3


def read_ages(logits: np.ndarray, network, evidence: np.ndarray | None, weight: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """(age-group probabilities (n, G), ages (n,)) of classifier logits under the network's age
    reading (its group means and top share) with this evidence and weight."""
    probabilities, ages = class_probabilities(logits, network.age_group_means, network.age_top_share,
                                              evidence, weight)
    return probabilities[:, HEADS["age_group"]], ages


def source_logits(source: str, cache_dir: Path) -> dict[str, np.ndarray]:
    """{logits (n, N_LOGITS), identity, files, age (UNKNOWN where none), young (the Young label,
    UNKNOWN where none), validation (bool)} of a source's prepared faces under the shipped
    network; cached as cache_dir/age_evidence_<source>.npz by model version. FaceSearchError
    (from build_cache's file) when the prepared cache is missing."""
    from facesearch.models.descriptor import embed_faces, shipped_model

    model = shipped_model()
    cached = Path(cache_dir) / f"age_evidence_{source}.npz"
    if cached.exists():
        with np.load(cached) as data:
            if str(data["network"]) == model.version:
                return {name: data[name] for name in data.files if name != "network"}
    prepared = prepared_dir(cache_dir, DEFAULTS.detector, DEFAULTS.parser) / f"{source}.npz"
    if not prepared.exists():
        from facesearch.errors import FaceSearchError

        raise FaceSearchError(f"{prepared} is missing: prepare it with training.data.build_cache "
                              f"({source!r}, {prepared.parent})")
    with np.load(prepared) as data:
        crops = decode_crops(data["crops_webp"], data["crop_offsets"])
        masks = data["masks"].astype(np.float32)
        found = {"identity": data["identity"], "files": data["files"], "age": data["age"],
                 "young": data["celeba"][:, YOUNG]}
    found["logits"] = embed_faces(model.numpy_network, crops, masks).logits
    found["validation"] = validation_mask(found["identity"], found["files"], VALIDATION_SHARE)
    np.savez(cached, network=np.array(model.version), **found)
    return found


def _within_person_spread(ages: np.ndarray, identity: np.ndarray) -> float:
    """Median over identities with MIN_PHOTOS or more faces of the standard deviation of their
    ages (years)."""
    spreads = [ages[identity == person].std() for person in np.unique(identity)
               if (identity == person).sum() >= MIN_PHOTOS]
    return float(np.median(spreads)) if spreads else float("nan")


def figures(data: dict[str, dict], network, evidence: np.ndarray | None, weight: float,
            validation: bool = True) -> dict:
    """The module's figures (step 5) on the validation faces (or, validation=False, on the
    training ones) of `data` (source_logits per source)."""
    utk = data["utkface"]
    chosen = utk["validation"] == validation
    groups, ages = read_ages(utk["logits"][chosen], network, evidence, weight)
    truth = utk["age"][chosen].astype(np.float64)
    error = np.abs(ages - truth)
    true_group = np.array([age_group(a) for a in truth])
    out = {"utkface": {"faces": int(chosen.sum()), "age_mae": float(error.mean()),
                       "age_group_accuracy": float((groups.argmax(1) == true_group).mean()),
                       "mae_by_band": {f"{first}-{last}": round(float(error[(truth >= first) & (truth <= last)].mean()), 2)
                                       for _, first, last in AGE_GROUPS if ((truth >= first) & (truth <= last)).any()}}}
    for source in ("celeba_aligned", "celeba_wild"):
        part = data[source]
        keep = part["validation"] == validation
        _, read = read_ages(part["logits"][keep], network, evidence, weight)
        young = part["young"][keep]
        out[source] = {"faces": int(keep.sum()),
                       "within_person_sd": _within_person_spread(read, part["identity"][keep]),
                       "all_ages_sd": float(read.std()),
                       "young_read_40_or_older": float((read[young == 1] >= 40).mean()),
                       "not_young_read_under_30": float((read[young == 0] < 30).mean())}
    return out


def choose_weight(data: dict[str, dict], network, evidence: np.ndarray) -> tuple[float, dict[float, float]]:
    """Step 4: (the chosen weight, {weight: its training-face criterion in years})."""
    scores = {}
    for weight in WEIGHTS:
        found = figures(data, network, evidence, weight, validation=False)
        spread = np.mean([found[s]["within_person_sd"] for s in ("celeba_aligned", "celeba_wild")])
        scores[weight] = round(float(found["utkface"]["age_mae"] + spread), 4)
    return min(scores, key=scores.get), scores


def run(cache_dir: Path = Path("cache"), weight: float | None = None) -> dict:
    """Fit, choose and measure (steps 1-5); returns the record (evidence, the weight used: the
    chosen one unless `weight` is given, the criterion, figures with and without)."""
    from facesearch.models.descriptor import shipped_model

    network = shipped_model().numpy_network
    data = {source: source_logits(source, cache_dir) for source in SOURCES}
    utk = data["utkface"]
    train = ~utk["validation"] & (utk["age"] != UNKNOWN)
    young = class_probabilities(utk["logits"][train])[0][:, YOUNG]
    evidence = fit_evidence(young, utk["age"][train])
    chosen, criterion = choose_weight(data, network, evidence)
    weight = chosen if weight is None else float(weight)
    return {"evidence": evidence.round(4).tolist(), "weight": weight, "chosen_by_criterion": chosen,
            "criterion_by_weight": criterion,
            "utkface_train_faces": int(train.sum()),
            "validation": {"without": figures(data, network, None, 0.0),
                           "with": figures(data, network, evidence, weight)},
            "training": {"without": figures(data, network, None, 0.0, validation=False),
                         "with": figures(data, network, evidence, weight, validation=False)}}


def export(evidence: np.ndarray, weight: float) -> str:
    """Write the evidence and weight into the shipped weights (models/weights/
    descriptor.safetensors; everything else as it was, the version's digest made again) and
    point the emotion head at the new version; returns the new version."""
    import torch
    from safetensors import safe_open

    from facesearch.models.descriptor import CENTRES_KEY, MEAN_MESH_KEY, WEIGHTS_FILE, save_model, shipped_model
    from facesearch.models.emotion import EMOTION_FILE, MASTER_VERSION_KEY, load_emotions
    from facesearch.models.network_layout import AGE_YOUNG_EVIDENCE, AGE_YOUNG_WEIGHT
    from facesearch.models.shipped import weights_metadata
    from facesearch.training.train import weights_digest

    model = shipped_model()
    network = model.network
    getattr(network, AGE_YOUNG_EVIDENCE).copy_(torch.from_numpy(np.asarray(evidence, np.float32)))
    getattr(network, AGE_YOUNG_WEIGHT).fill_(float(weight))
    with safe_open(str(WEIGHTS_FILE), framework="np") as stored:
        centres = stored.get_tensor(CENTRES_KEY).astype(np.float32)
        mesh = stored.get_tensor(MEAN_MESH_KEY).astype(np.float32)
    metadata = weights_metadata(WEIGHTS_FILE)
    old = metadata["version"]
    metadata["version"] = f"{old.rsplit('-', 1)[0]}-{weights_digest(network)}"
    save_model(network, centres, mesh, metadata, WEIGHTS_FILE)
    head = load_emotions(EMOTION_FILE)
    if head.master_version == old:
        head.metadata[MASTER_VERSION_KEY] = metadata["version"]
        head.save(EMOTION_FILE)
    return metadata["version"]


def main(argv: list[str] | None = None) -> None:
    """Fit, choose, measure; with --export, write into the shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    parser.add_argument("--weight", type=float, default=None,
                        help="use this weight instead of the one step 4 chooses")
    parser.add_argument("--export", action="store_true", help="write into the shipped weights")
    args = parser.parse_args(argv)
    record = run(args.cache, args.weight)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"weight {record['weight']} (chosen by step 4: {record['chosen_by_criterion']}; criterion, "
              f"years, by weight: {record['criterion_by_weight']})")
        for split in ("training", "validation"):
            for name in ("without", "with"):
                print(f"{split:>10} {name:>7}: {json.dumps(record[split][name])}")
    if args.export:
        print(f"exported: version {export(np.array(record['evidence'], np.float32), record['weight'])}")


if __name__ == "__main__":
    main()
