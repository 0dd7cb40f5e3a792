"""Hit-to-particle clustering: metrics on hand-made jets, Hungarian matching invariance, data-config
targets vs a direct computation, a short training, ONNX parity and the evaluation processor."""

from __future__ import annotations

import csv
import pathlib

import awkward as ak
import numpy as np
import pytest
import torch
import uproot
import yaml

from hepnn_coffea.calo.clustering_eval import (
    BaselineParams,
    baseline_clusters,
    cluster_energy_matches,
    clustering_sums,
    view_hits,
)
from hepnn_coffea.calo.clustering_model import HitClusteringTransformer, hungarian_match, seed_targets

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
DATA = ROOT / "models" / "data" / "calo_clustering.yaml"
MODEL = ROOT / "models" / "calo" / "clustering.yaml"
TINY = {
    "model": {"params": {"embed_dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32}},
    "training": {
        "epochs": 3,
        "batch_size": 32,
        "samples_per_epoch": 128,
        "lr": 3e-3,
        "warmup_steps": 0,
        "early_stopping_patience": None,
        "seed": 3,
    },
}


# ------------------------------------------------------------------ metrics
def test_perfect_clustering_scores_one() -> None:
    true = np.array([0, 0, 1, 1, 1, 2])
    e = np.array([1.0, 2.0, 3.0, 1.0, 1.0, 5.0])
    s = clustering_sums(true, true + 7, e)  # label values do not matter
    assert s["eff_num"] == s["pur_num"] == s["energy"] == pytest.approx(13.0)
    assert s["ari"] == pytest.approx(1.0) and s["ari_weighted"] == pytest.approx(1.0)


def test_known_mix() -> None:
    true = np.array([0, 0, 1, 1])
    e = np.array([1.0, 3.0, 2.0, 4.0])
    merged = clustering_sums(true, np.zeros(4), e)  # everything in one cluster
    assert merged["eff_num"] / merged["energy"] == pytest.approx(1.0)
    assert merged["pur_num"] / merged["energy"] == pytest.approx(6.0 / 10.0)
    assert merged["ari"] == pytest.approx(0.0)
    split = clustering_sums(true, np.arange(4), e)  # every hit alone
    assert split["pur_num"] / split["energy"] == pytest.approx(1.0)
    assert split["eff_num"] / split["energy"] == pytest.approx((3 + 4) / 10)
    swap = clustering_sums(true, np.array([0, 1, 1, 1]), e)  # hit 1 (3 GeV) goes to the wrong cluster
    assert swap["eff_num"] / swap["energy"] == pytest.approx((3 + 6) / 10)
    assert swap["pur_num"] / swap["energy"] == pytest.approx((1 + 6) / 10)
    labels, energies, best = cluster_energy_matches(true, np.array([0, 1, 1, 1]), e, min_energy=0.5)
    np.testing.assert_allclose(energies, [[4.0, 6.0], [9.0, 9.0]])
    assert labels.tolist() == [0, 1] and best.tolist() == [1, 1]


def test_hungarian_loss_is_invariant_to_slot_permutation() -> None:
    torch.manual_seed(0)
    net = HitClusteringTransformer(4, 6 + 9, embed_dim=8, num_layers=1, num_heads=2, ff_dim=8)
    k, n, p = net.n_slots, 3, 10
    pred = torch.randn(n, k + 9, p)
    target = torch.zeros(n, k + 9, p)
    slot = torch.randint(0, k, (n, p))
    target[:, :k] = torch.nn.functional.one_hot(slot, k).permute(0, 2, 1).float()
    target[:, k + 1] = 1  # electron
    target[:, -1] = torch.rand(n, p)
    target[1, :, 7:] = -1  # padding
    perm = torch.tensor([3, 0, 4, 1, 2, 5])  # matchable slots permuted, the other slot kept
    shuffled = pred.clone()
    shuffled[:, :k] = pred[:, perm]
    torch.testing.assert_close(net.loss(pred, target), net.loss(shuffled, target))
    assert hungarian_match(np.array([[[0.1, 0.9], [0.8, 0.2], [0.0, 0.0]]])).tolist() == [[1, 0]]


def test_seed_targets_mark_the_most_energetic_hit_of_each_kept_cluster() -> None:
    slot = torch.tensor([[0, 0, 1, 2, 1, 2, 0]])  # K = 3: clusters 0, 1 kept, 2 = other
    energy = torch.tensor([[0.0, 2.0, 1.0, 9.0, 3.0, 1.0, 1.0]])  # hit 0 is a track
    goal = seed_targets(torch.nn.functional.one_hot(slot, 3).permute(0, 2, 1).float(), energy)
    assert goal.tolist() == [[0, 1, 0, 0, 1, 0, 0]]  # never the other slot's hit 3


def test_eager_trimming_and_padding_do_not_change_the_output() -> None:
    """The eager forward cuts the point axis to the longest jet: same numbers as on a longer padding,
    and in training mode the loss (with the seed term) is finite and differentiable."""
    torch.manual_seed(1)
    net = HitClusteringTransformer(
        7, 6 + 9, embed_dim=16, num_layers=1, num_heads=2, ff_dim=16, slot_layers=1
    ).eval()
    n, p = 3, 12
    feats, energy = torch.randn(n, 7, p), torch.rand(n, 1, p)
    mask = torch.ones(n, 1, p)
    mask[0, :, 9:] = 0
    mask[1, :, 4:] = 0  # fewer hits than seeds
    feats, energy = feats * mask, energy * mask
    out = net(feats, energy, mask)
    longer = net(*(torch.nn.functional.pad(t, (0, 20)) for t in (feats, energy, mask)))
    torch.testing.assert_close(out, longer[..., :p], rtol=1e-5, atol=1e-5)
    assert (longer[..., p:] == 0).all() and (out[1, :, 4:] == 0).all()
    net.train()
    target = torch.full((n, 6 + 9, p), -1.0)
    target[:, :6] = torch.nn.functional.one_hot(torch.randint(0, 6, (n, p)), 6).permute(0, 2, 1).float()
    target[:, 6:11] = torch.nn.functional.one_hot(torch.randint(0, 5, (n, p)), 5).permute(0, 2, 1).float()
    target[:, 11:] = torch.rand(n, 4, p)
    target = torch.where(mask.bool(), target, torch.full_like(target, -1.0))
    pred, aux = net.forward_with_aux(feats, energy, mask)
    terms = net.loss_terms(pred, target, aux)
    assert set(terms) == {"assign", "pid", "energy", "direction", "seed"}
    loss = net.loss(pred, target, aux).mean()
    loss.backward()
    assert torch.isfinite(loss) and net.seed_head.weight.grad.abs().sum() > 0


def test_validation_loss_has_the_training_terms() -> None:
    """The seed term comes from the forward's explicit aux output, in train and eval mode alike, and
    the model keeps no state between a forward and its loss (issue: it used to stash the seed logits)."""
    from hepnn_coffea.nn import Network
    from hepnn_coffea.training.loop import StepSettings, _forward, step_loss
    from hepnn_coffea.training.targets import ModelLoss

    torch.manual_seed(2)
    core = HitClusteringTransformer(5, 4 + 9, embed_dim=8, num_layers=1, num_heads=2, ff_dim=8, slot_layers=1)
    net, n, p = Network(core, ["hits", "energy", "mask"], ["features", "energy", "mask"]), 4, 9
    batch = {"hits": torch.randn(n, 5, p), "energy": torch.rand(n, 1, p), "mask": torch.ones(n, 1, p)}
    target = torch.zeros(n, 4 + 9, p)
    target[:, :4] = torch.nn.functional.one_hot(torch.randint(0, 4, (n, p)), 4).permute(0, 2, 1).float()
    target[:, 4] = 1
    target[:, -1] = torch.rand(n, p)
    loss_fn, s = ModelLoss(core), StepSettings(device=torch.device("cpu"))
    losses = {}
    for mode in ("train", "eval"):
        getattr(net, mode)()
        out, aux = _forward(net, net.input_groups, batch, s)
        assert set(aux) == {"seed_logit"} and aux["seed_logit"].shape == (n, p)
        losses[mode] = step_loss(out, batch, target, loss_fn, s, aux)[0]
        without_seed = step_loss(out, batch, target, loss_fn, s)[0]
        assert losses[mode] > without_seed  # the seed BCE is in both modes
    torch.testing.assert_close(losses["train"], losses["eval"])  # no dropout: the same loss
    assert not any(isinstance(v, torch.Tensor) for v in vars(core).values())  # no tensor kept on the model


# ------------------------------------------------------------ on calo view
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    tmp = tmp_path_factory.mktemp("clustering")
    fileset = {
        f"top_{s}": {
            "files": {str(SAMPLES / f"topqcd_{s}_top.root"): "tree"},
            "metadata": {"sample": "top", "split": s},
        }
        for s in ("train", "val", "test")
    }
    calorimeter_view(fileset, tmp / "view", seed=5, executor="iterative", chunksize=1000)
    from hepnn_coffea.calo.samples import calo_fileset

    view_fs = {k: v for s in ("train", "val", "test") for k, v in calo_fileset(tmp / "view", s).items()}
    data = yaml.safe_load(DATA.read_text())
    data["filters"] = [{"first": 160}]  # keep the test fast
    (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    preprocess(view_fs, tmp / "data.yaml", tmp / "shards", executor="iterative", chunksize=1000)
    train(MODEL, tmp / "shards", tmp / "run", overrides=TINY, progress=False)
    return {"dir": tmp, "view": tmp / "view", "shards": tmp / "shards", "run": tmp / "run"}


def _view_file(run: dict, split: str) -> pathlib.Path:
    return next((run["view"] / split).rglob("*.root"))


def test_targets_match_a_direct_computation(run: dict) -> None:
    from hepnn_coffea.config.data_config import DataConfig
    from hepnn_coffea.features.compute import compute_features

    events = uproot.open(_view_file(run, "test"))["tree"].arrays(entry_stop=50)
    config = DataConfig.from_yaml(run["shards"] / "data_config.yaml")
    batch = compute_features(events, config, selection="selection", with_labels=True)
    target, labels = batch.labels, config.label_names
    hits = view_hits(events[ak.num(events.cell_E) > 0])
    k = sum(n.startswith("slot_") for n in labels)
    assert k >= 2 and len(hits) >= 10 and len(hits) == len(target)  # the loop below checks something
    assert int(ak.sum(ak.num(hits.energy))) > 100
    for j in range(len(hits)):
        h = {f: ak.to_numpy(hits[f][j]) for f in hits.fields}
        m = min(len(h["energy"]), target.shape[-1])
        part_e = np.bincount(
            h["particle"][h["is_track"] == 0],
            weights=h["energy"][h["is_track"] == 0],
            minlength=len(events.part_px[j]),
        )
        rank = np.argsort(np.argsort(-part_e, kind="stable"), kind="stable")
        slot = np.minimum(rank[h["particle"]], k - 1)[:m]
        np.testing.assert_array_equal(target[j, :k, :m].argmax(0), slot)
        np.testing.assert_array_equal(target[j, k : k + 5, :m].argmax(0), h["type"][:m])
        np.testing.assert_allclose(
            target[j, k + 5, :m], np.log1p(part_e[h["particle"]])[:m], rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(target[j, -1, :m], h["energy"][:m], rtol=1e-6)
        assert (target[j, :, m:] == -1).all()


def test_short_training_reduces_the_val_loss(run: dict) -> None:
    with (run["run"] / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])


def test_onnx_parity_and_evaluation_processor(run: dict) -> None:
    from hepnn_coffea.calo.clustering_eval import run_clustering_evaluation, summarize, to_markdown
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.features.compute import compute_features
    from hepnn_coffea.inference.tagger import OnnxTagger
    from hepnn_coffea.training.trainer import load_network

    onnx_path = run["dir"] / "clustering.onnx"
    assert export_onnx(run["run"], onnx_path, parity_jets=32)["max_abs_diff"] < 1e-3
    tagger = OnnxTagger(onnx_path, batch_size=16)
    assert tagger.per_point and tagger.output_fields[0] == "pred_slot_0"
    events = uproot.open(_view_file(run, "test"))["tree"].arrays(entry_stop=20)
    pred = tagger(events)
    net, _ = load_network(run["run"])
    batch = compute_features(events, tagger.config, selection="test_time_selection", with_labels=False)
    with torch.no_grad():
        expected = net(*(torch.from_numpy(batch.inputs[g]) for g in net.input_groups)).numpy()
    real = batch.inputs["mask"][:, 0, :] != 0
    for i, field in enumerate(tagger.output_fields):
        np.testing.assert_allclose(
            ak.to_numpy(ak.flatten(pred[field])), expected[:, i, :][real], rtol=1e-3, atol=1e-3
        )
    # hit energy passes through: the per-hit outputs line up with view_hits
    hits = view_hits(events)
    kept = hits.energy[ak.local_index(hits.energy) < ak.num(pred.pred_hit_energy)]
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(pred.pred_hit_energy)), ak.to_numpy(ak.flatten(kept)), rtol=1e-6
    )
    result = run_clustering_evaluation(run["view"], onnx_path, split="test", chunksize=60)
    table = summarize(result)
    for method in ("learned", "baseline"):
        row = table["all"][method]
        assert row["jets"] > 0 and 0 < row["efficiency"] <= 1 and 0 < row["purity"] <= 1
    learned = {"process": "top", "estimator": "learned"}
    assert result["hists"]["efficiency"][learned].sum() == table["all"]["learned"]["jets"]
    assert "| top | baseline |" in to_markdown(table)
    from hepnn_coffea.calo.clustering_plots import plot_clustering

    assert all(p.is_file() for p in plot_clustering(result, run["dir"] / "plots"))


def test_learned_clusters_group_the_other_slot_by_predicted_direction() -> None:
    from hepnn_coffea.calo.clustering_eval import learned_clusters

    k = 3  # slots 0, 1 and other
    slot = np.array([0, 0, 1, 2, 2, 2])
    pred = {f"pred_slot_{i}": (slot == i).astype(float) for i in range(k - 1)}
    pred["pred_slot_other"] = (slot == k - 1).astype(float)
    pred.update(
        {
            f"pred_pid_{c}": np.zeros(6)
            for c in ("photon", "electron", "muon", "charged_hadron", "neutral_hadron")
        }
    )
    pred["pred_pid_photon"] = np.ones(6)
    pred["pred_cluster_deta"] = np.array([0, 0, 0.3, 0.100, 0.105, 0.5])
    pred["pred_cluster_dphi"] = np.zeros(6)
    hits = {"energy": np.ones(7), "is_track": np.zeros(7), "is_em": np.ones(7)}  # hit 6 was truncated
    single, _ = learned_clusters(pred, k, hits)
    assert len(set(single[3:].tolist())) == 4  # other-slot and truncated hits alone
    label, types = learned_clusters(pred, k, hits, other_eps=0.02)
    assert label[0] == label[1] != label[2] and label[3] == label[4] != label[5] and label[6] not in label[:6]
    assert len(set(label.tolist())) == 5 and set(types) == set(label.tolist()) and types[int(label[3])] == 0


def test_baseline_separates_distant_deposits() -> None:
    hits = {
        "deta": np.array([0.0, 0.0, 0.01, 0.5, 0.51]),
        "dphi": np.array([0.0, 0.0, 0.0, 0.5, 0.5]),
        "energy": np.array([0.0, 5.0, 3.0, 4.0, 4.0]),
        "is_track": np.array([1, 0, 0, 0, 0]),
        "is_em": np.array([0, 1, 1, 0, 0]),
    }
    label, types = baseline_clusters(hits, BaselineParams(eps=0.05, min_energy=1.0))
    assert label[0] == label[1] == label[2] != label[3] == label[4]
    assert types[int(label[1])] == 1 and types[int(label[3])] == 4  # electron (track, EM); neutral hadron
