"""Export a trained run to a self-describing ONNX file.

The ONNX file has one input per data-config group the network reads (named
after the group, dynamic batch axis ``N`` and particle axis ``n_<group>``) and
one output ``softmax`` (classification) or ``output`` (regression). Its
``metadata_props`` carry everything inference needs:

``hepnn_coffea.data_config``  the data config YAML, standardization filled in
``hepnn_coffea.classes``      JSON list of class (or target) names
``hepnn_coffea.task``         ``classification`` or ``regression``
``hepnn_coffea.provenance``   JSON: package/torch versions, config hash, run folder, parity
``hepnn_coffea.experts``      JSON routing rule, for a multi-expert run (see below)

Regression outputs are in physical units (the standardization of the targets
learnt in training is undone inside the graph). A multi-expert run folder (one
with ``experts.json``) exports to ONE file that routes: it takes the extra input
``expert_index`` (int64, ``(N,)``, computed from the data config's ``experts``
rule by :func:`hepnn_coffea.features.compute_features`), runs every expert and
returns each entry's own expert's output.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Any

import numpy as np

from hepnn_coffea._optional import missing_extra, require
from hepnn_coffea.export.metadata import EXPERT_INPUT, META_PREFIX, ExportError, read_metadata
from hepnn_coffea.processing.shards import atomic_write_bytes

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

# EXPERT_INPUT, META_PREFIX, ExportError and read_metadata live in the torch-free
# hepnn_coffea.export.metadata (inference reads them); re-exported here for compatibility.
__all__ = ["EXPERT_INPUT", "META_PREFIX", "PARITY_TOLERANCE", "ExportError", "export_onnx", "read_metadata"]

PARITY_TOLERANCE = 1e-4


class _WithHead(nn.Module):
    """Softmax for classifiers, physical units for regression."""

    def __init__(self, net: nn.Module, softmax: bool) -> None:
        super().__init__()
        self.net = net
        self.softmax = softmax

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.net(*inputs)
        return torch.softmax(out, dim=1) if self.softmax else self.net.physical(out)


class _Router(nn.Module):
    """Runs every expert and keeps, per entry, the output of the expert ``expert_index`` names."""

    def __init__(self, heads: list[_WithHead]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *features, expert_index = inputs
        stacked = torch.stack([head(*features) for head in self.heads], dim=1)  # (N, experts, outputs)
        index = (
            expert_index.long().clamp(0, len(self.heads) - 1).view(-1, 1, 1).expand(-1, 1, stacked.shape[-1])
        )
        return torch.gather(stacked, 1, index).squeeze(1)


def _reference(heads: list[_WithHead], groups: list[str], data: dict[str, np.ndarray]) -> np.ndarray:
    """Torch outputs, each entry through its own expert (the routing the ONNX graph must reproduce)."""
    with torch.no_grad():
        if len(heads) == 1:
            return heads[0](*(torch.from_numpy(data[g]) for g in groups)).numpy()
        out = None
        for e, head in enumerate(heads):
            rows = np.flatnonzero(data["expert"] == e)
            if len(rows):
                pred = head(*(torch.from_numpy(data[g][rows]) for g in groups)).numpy()
                out = np.zeros((len(data["expert"]), pred.shape[1]), dtype=pred.dtype) if out is None else out
                out[rows] = pred
        return out


def _parity_inputs(run_dir: pathlib.Path, groups: list[str], n: int) -> dict[str, np.ndarray]:
    from hepnn_coffea.training.dataset import ShardDataset

    shards = json.loads((run_dir / "provenance.json").read_text())["shards"]
    for split in ("test", "val", "train"):
        try:
            ds = ShardDataset(shards, split, groups)
        except (ValueError, FileNotFoundError):
            continue
        return ds.gather(np.arange(min(n, len(ds))))
    raise ExportError(f"no shards found under {shards} to check parity on real jets")


def export_onnx(
    run_dir: str | pathlib.Path,
    output: str | pathlib.Path,
    *,
    checkpoint: str = "best.pt",
    opset: int = 17,
    parity_jets: int = 512,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Export ``run_dir``'s network to ``output`` and check parity on real jets.

    The file is written only if onnxruntime's output matches torch's within
    ``tolerance`` on up to ``parity_jets`` jets from the run's
    shards (test split first); otherwise :class:`ExportError` is raised.

    Returns
    -------
    dict
        ``{"path", "inputs", "max_abs_diff", "n_jets"}``. The check passes when
        ``max |onnx - torch| / max(1, |torch|) <= tolerance`` (absolute for scores).
    """
    onnx = require("onnx")
    ort = require("onnxruntime")
    from hepnn_coffea.training.experts import read_experts
    from hepnn_coffea.training.trainer import load_network

    run_dir, output = pathlib.Path(run_dir), pathlib.Path(output)
    experts = read_experts(run_dir)
    member_dirs = [run_dir / r for r in experts["runs"]] if experts else [run_dir]
    missing = [str(d) for d in member_dirs if not (d / "checkpoints" / checkpoint).is_file()]
    if missing:
        raise ExportError(f"no checkpoint {checkpoint} in {missing}: train every expert first")
    prov = json.loads((member_dirs[0] / "provenance.json").read_text())
    classification = prov["label_type"] == "simple"
    heads, cfg = [], {}
    for member in member_dirs:
        net, cfg = load_network(member, checkpoint)
        heads.append(_WithHead(net, softmax=classification).eval())
    groups = heads[0].net.input_groups
    if any(h.net.input_groups != groups for h in heads):
        raise ExportError(
            f"experts of {run_dir} read different input groups; they must share the data config's"
        )
    model = _Router(heads).eval() if experts else heads[0]
    input_names = groups + ([EXPERT_INPUT] if experts else [])
    data = _parity_inputs(member_dirs[0], groups, max(parity_jets, 2))
    if len(data["target"]) < 2:
        raise ExportError("need at least 2 real jets to trace with a batch >= 2")
    if experts:
        data[EXPERT_INPUT] = data["expert"].astype(np.int64)
    example = tuple(torch.from_numpy(data[g][:2]) for g in input_names)
    out_name = "softmax" if classification else "output"
    expected = _reference(heads, groups, data)
    if experts and expected.ndim != 2:
        raise ExportError("routing to experts is supported for per-entry outputs only")
    dynamic = {g: {0: "N", 2: f"n_{g}"} if data[g].ndim == 3 else {0: "N"} for g in input_names}
    dynamic[out_name] = {0: "N", 2: "n_points"} if expected.ndim == 3 else {0: "N"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            example,
            str(tmp_path),
            input_names=input_names,
            output_names=[out_name],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
        proto = onnx.load(str(tmp_path))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: data[i.name] for i in session.get_inputs()}
    got = session.run(None, feed)[0]
    diff = float(np.max(np.abs(got - expected)))
    # scores are <= 1: absolute difference; regression outputs (e.g. 600 GeV): relative to |value| > 1
    scaled = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))))
    if not scaled <= tolerance:
        raise ExportError(
            f"ONNX output differs from torch by {diff:.3g} ({scaled:.3g} relative to max(1, |torch|), "
            f"> {tolerance:g}) on {len(expected)} jets; not written"
        )
    metadata = {
        "data_config": (member_dirs[0] / "data_config.yaml").read_text(),
        "classes": json.dumps(prov["labels"]),
        "task": str(cfg.get("task", "classification" if classification else "regression")),
        "input_groups": json.dumps(groups),
        "provenance": json.dumps(
            {
                "hepnn_coffea_version": prov["hepnn_coffea_version"],
                "torch_version": torch.__version__,
                "config_hash": prov["config_hash"],
                "run_dir": str(run_dir.resolve()),
                "checkpoint": checkpoint,
                "model": cfg["model"].get("name"),
                "parity_max_abs_diff": diff,
                "parity_jets": len(expected),
                "target_scaling": prov.get("target_scaling"),
            }
        ),
    }
    if experts:
        metadata["experts"] = json.dumps(experts)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.checker.check_model(proto)
    atomic_write_bytes(output, lambda f: f.write(proto.SerializeToString()))
    return {"path": str(output), "inputs": input_names, "max_abs_diff": diff, "n_jets": len(expected)}
