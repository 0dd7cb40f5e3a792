"""Export a trained run to a self-describing ONNX file.

The ONNX file has one input per data-config group the network reads (named
after the group, dynamic batch axis ``N`` and particle axis ``n_<group>``) and
one output ``softmax`` (classification) or ``output`` (regression). Its
``metadata_props`` carry everything inference needs:

``hepnn_coffea.data_config``  the data config YAML, standardization filled in
``hepnn_coffea.classes``      JSON list of class (or target) names
``hepnn_coffea.task``         ``classification`` or ``regression``
``hepnn_coffea.provenance``   JSON: package/torch versions, config hash, run folder, parity
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hepnn_coffea._optional import require
from hepnn_coffea.processing.shards import atomic_write_bytes

META_PREFIX = "hepnn_coffea."
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """Export failed, e.g. ONNX output differs from torch beyond the tolerance."""


class _WithHead(nn.Module):
    def __init__(self, net: nn.Module, softmax: bool) -> None:
        super().__init__()
        self.net = net
        self.softmax = softmax

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.net(*inputs)
        return torch.softmax(out, dim=1) if self.softmax else out


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
    ``tolerance`` (max abs difference) on up to ``parity_jets`` jets from the run's
    shards (test split first); otherwise :class:`ExportError` is raised.

    Returns
    -------
    dict
        ``{"path", "inputs", "max_abs_diff", "n_jets"}``.
    """
    onnx = require("onnx")
    ort = require("onnxruntime")
    from hepnn_coffea.training.trainer import load_network

    run_dir, output = pathlib.Path(run_dir), pathlib.Path(output)
    net, cfg = load_network(run_dir, checkpoint)
    prov = json.loads((run_dir / "provenance.json").read_text())
    classification = prov["label_type"] == "simple"
    model = _WithHead(net, softmax=classification).eval()
    data = _parity_inputs(run_dir, net.input_groups, max(parity_jets, 2))
    if len(data["target"]) < 2:
        raise ExportError("need at least 2 real jets to trace with a batch >= 2")
    example = tuple(torch.from_numpy(data[g][:2]) for g in net.input_groups)
    out_name = "softmax" if classification else "output"
    dynamic = {g: {0: "N", 2: f"n_{g}"} if data[g].ndim == 3 else {0: "N"} for g in net.input_groups}
    dynamic[out_name] = {0: "N"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp) / "model.onnx"
        torch.onnx.export(
            model, example, str(tmp_path), input_names=net.input_groups, output_names=[out_name],
            dynamic_axes=dynamic, opset_version=opset, dynamo=False,
        )  # fmt: skip
        proto = onnx.load(str(tmp_path))
    with torch.no_grad():
        expected = model(*(torch.from_numpy(data[g]) for g in net.input_groups)).numpy()
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: data[i.name] for i in session.get_inputs()}
    got = session.run(None, feed)[0]
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= tolerance:
        raise ExportError(
            f"ONNX output differs from torch by {diff:.3g} (> {tolerance:g}) on {len(expected)} jets; not written"
        )
    metadata = {
        "data_config": (run_dir / "data_config.yaml").read_text(),
        "classes": json.dumps(prov["labels"]),
        "task": "classification" if classification else "regression",
        "input_groups": json.dumps(net.input_groups),
        "provenance": json.dumps({
            "hepnn_coffea_version": prov["hepnn_coffea_version"], "torch_version": torch.__version__,
            "config_hash": prov["config_hash"], "run_dir": str(run_dir.resolve()), "checkpoint": checkpoint,
            "model": cfg["model"].get("name"), "parity_max_abs_diff": diff, "parity_jets": len(expected),
        }),
    }  # fmt: skip
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.checker.check_model(proto)
    atomic_write_bytes(output, lambda f: f.write(proto.SerializeToString()))
    return {"path": str(output), "inputs": net.input_groups, "max_abs_diff": diff, "n_jets": len(expected)}


def read_metadata(model: Any) -> dict[str, Any]:
    """The hepnn_coffea metadata of an ONNX file path or an onnxruntime session (parsed)."""
    if isinstance(model, (str, pathlib.Path)):
        ort = require("onnxruntime")
        model = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    props = model.get_modelmeta().custom_metadata_map
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key.startswith(META_PREFIX):
            name = key[len(META_PREFIX):]
            out[name] = yaml.safe_load(value) if name == "data_config" else (
                json.loads(value) if name in ("classes", "input_groups", "provenance") else value)  # fmt: skip
    return out
