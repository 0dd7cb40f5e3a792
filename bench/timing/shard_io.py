"""Shard size and loader speed: ragged shards (format /2) next to padded ones (/1), and a JetClass projection.

Measured side by side in one run on the shared train+val split (70k top/QCD jets):

1. Shard bytes per jet against the source files' bytes per jet, for the whole
   ``top_kin.yaml`` (4 input groups, every zoo model) and the PFN's two groups,
   in float32 and float16; the padded ``.npy`` shards the ragged ones replace are
   written from the same rows (``RaggedShard.to_records``) for comparison. The
   float32 preprocess run gives the preprocessing jets/s (iterative executor,
   one process, reading included).
2. Loader jets/s: one shuffled pass of ``ShardDataset.batches`` (batch 512, the PFN's
   groups) from the padded shards, the ragged shards padded to 128, and the ragged
   shards cut to each batch's longest jet (what the trainer does), interleaved rounds,
   best of ``--repeat``.
3. A JetClass-scale projection (100M jets at this data config's bytes per jet): shard
   size, CPU hours to preprocess, and loader processes (one core each) needed to feed
   one GPU at the training rates measured on a lent H100 (``timing/gpu_training.py``).

Usage::

    .venv/bin/python -m bench.timing.shard_io [--work DIR] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import yaml

from bench.common import DATA, DATA_CONFIG, interleaved_times, make_fileset, markdown_table, write_json

#: PFN groups (models/pfn.yaml)
PFN_GROUPS = ("pf_features", "pf_mask")
#: jets/s of the trainer on one lent H100, bf16, prefetch 2 (bench/README.md, timing/gpu_training.py)
GPU_JETS_PER_S = {"PFN (batch 512)": 66_316, "ParticleNet (batch 128)": 8_316, "ParT (batch 128)": 3_025}
JETCLASS_JETS = 100_000_000


def data_configs(work: pathlib.Path) -> dict[str, pathlib.Path]:
    """``top_kin.yaml`` and variants: float16 groups, and the PFN's groups only."""
    raw = yaml.safe_load(DATA_CONFIG.read_text())
    variants = {}
    for name, groups, dtype in (
        ("all groups, float16", None, "float16"),
        ("PFN groups, float32", PFN_GROUPS, None),
        ("PFN groups, float16", PFN_GROUPS, "float16"),
    ):
        cfg = json.loads(json.dumps(raw))
        if groups:
            cfg["inputs"] = {g: v for g, v in cfg["inputs"].items() if g in groups}
        for g in cfg["inputs"].values():
            if dtype:
                g["dtype"] = dtype
        path = work / f"top_kin_{name.replace(', ', '_').replace(' ', '_')}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        variants[name] = path
    return {"all groups, float32": DATA_CONFIG, **variants}


def shard_files(shards: pathlib.Path, suffix: str = ".arrow") -> list[pathlib.Path]:
    return sorted(p for split in ("train", "val") for p in (shards / split).rglob(f"*{suffix}"))


def write_padded_copy(shards: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """The same rows as padded ``.npy`` shards of format /1 (what preprocessing wrote before)."""
    from hepnn_coffea.processing.shards import open_shard

    shutil.copytree(shards, out, ignore=shutil.ignore_patterns("*.arrow"))
    manifest = json.loads((shards / "manifest.json").read_text())
    for samples in manifest["splits"].values():
        for entry in samples.values():
            for s in entry["shards"]:
                np.save(
                    out / s["path"].replace(".arrow", ".npy"), open_shard(shards / s["path"]).to_records()
                )
                s["path"] = s["path"].replace(".arrow", ".npy")
    manifest["format"] = "hepnn_coffea.shards/1"
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def measure_sizes(work: pathlib.Path, data: pathlib.Path) -> tuple[dict[str, Any], pathlib.Path]:
    """Bytes per jet of each variant's train+val shards vs the source files; the float32 shards' folder."""
    from hepnn_coffea.processing.preprocess import preprocess

    fileset = {k: v for k, v in make_fileset(data).items() if not k.endswith("_test")}
    source = sum(pathlib.Path(f).stat().st_size for v in fileset.values() for f in v["files"])
    rows: dict[str, Any] = {}
    f32 = work / "shards_f32"
    for name, config in data_configs(work).items():
        out = f32 if name == "all groups, float32" else work / f"shards_{len(rows)}"
        start = time.perf_counter()
        manifest = preprocess(fileset, config, out, executor="iterative", chunksize=100_000)
        seconds = time.perf_counter() - start
        n_jets = sum(e["entries_out"] for samples in manifest["splits"].values() for e in samples.values())
        size = sum(p.stat().st_size for p in shard_files(out))
        rows[name] = {
            "jets": n_jets,
            "bytes": size,
            "bytes_per_jet": size / n_jets,
            "ratio_to_source": size / source,
            "preprocess_jets_per_s": n_jets / seconds,
        }
    padded = write_padded_copy(f32, work / "shards_padded")
    size = sum(p.stat().st_size for p in shard_files(padded, ".npy"))
    n_jets = rows["all groups, float32"]["jets"]
    rows["padded .npy (before), all groups"] = {
        "jets": n_jets,
        "bytes": size,
        "bytes_per_jet": size / n_jets,
        "ratio_to_source": size / source,
    }
    rows["source files"] = {
        "jets": n_jets,
        "bytes": source,
        "bytes_per_jet": source / n_jets,
        "ratio_to_source": 1.0,
    }
    return rows, f32


def measure_loader(
    ragged: pathlib.Path, padded: pathlib.Path, repeat: int, batch_size: int = 512
) -> dict[str, float]:
    """Jets/s of one shuffled pass over the train split per way of reading it."""
    from hepnn_coffea.training.dataset import ShardDataset

    sets = {
        "padded .npy": ShardDataset(padded, "train", list(PFN_GROUPS)),
        "ragged, padded to 128": ShardDataset(ragged, "train", list(PFN_GROUPS)),
        "ragged, cut to the batch's longest jet": ShardDataset(ragged, "train", list(PFN_GROUPS)),
    }
    sets["ragged, cut to the batch's longest jet"].trim_at_gather(PFN_GROUPS, "pf_mask", 32)
    n = len(sets["padded .npy"]) // batch_size * batch_size

    def one_pass(ds: ShardDataset) -> None:
        for _ in ds.batches(batch_size, shuffle=True, seed=1, drop_last=True):
            pass

    times = interleaved_times({k: (lambda ds=ds: one_pass(ds)) for k, ds in sets.items()}, repeat)
    return {k: n / t for k, t in times.items()}


def projection(sizes: dict[str, Any], loader: dict[str, float]) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the JetClass-scale tables: shard size and preprocessing CPU hours; loader processes per GPU."""
    rows = []
    rate = loader["ragged, cut to the batch's longest jet"]
    for name in (
        "all groups, float32",
        "all groups, float16",
        "PFN groups, float16",
        "padded .npy (before), all groups",
    ):
        row = sizes[name]
        pre = sizes["all groups, float32"]["preprocess_jets_per_s"]
        rows.append(
            [
                name,
                f"{row['bytes_per_jet'] * JETCLASS_JETS / 1e9:,.0f} GB",
                f"{JETCLASS_JETS / pre / 3600:,.1f}",
            ]
        )
    gpu = [[model, f"{jets:,}", f"{math.ceil(jets / rate)}"] for model, jets in GPU_JETS_PER_S.items()]
    return rows, gpu


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, print the tables and optionally save them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=DATA, help="folder of the shared top/QCD files")
    parser.add_argument("--work", type=pathlib.Path, help="work folder (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved loader rounds; best is kept")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hepnn_shard_io_") as tmp:
        work = args.work or pathlib.Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sizes, f32 = measure_sizes(work, args.data)
        loader = measure_loader(f32, work / "shards_padded", args.repeat)
    print(
        markdown_table(
            ["shards (train+val)", "jets", "MB", "bytes/jet", "x source", "preprocess jets/s"],
            [
                [
                    k,
                    f"{v['jets']:,}",
                    f"{v['bytes'] / 1e6:.1f}",
                    f"{v['bytes_per_jet']:,.0f}",
                    f"{v['ratio_to_source']:.2f}",
                    f"{v.get('preprocess_jets_per_s', 0):,.0f}" if "preprocess_jets_per_s" in v else "",
                ]
                for k, v in sizes.items()
            ],
        )
    )
    base = loader["padded .npy"]
    print(
        markdown_table(
            ["loader (PFN groups, batch 512, 1 process)", "jets/s", "x padded"],
            [[k, f"{v:,.0f}", f"{v / base:.2f}"] for k, v in loader.items()],
        )
    )
    sizes_rows, gpu_rows = projection(sizes, loader)
    print(
        markdown_table(
            ["JetClass scale: 100M jets", "shards", "CPU hours to preprocess (1 core)"], sizes_rows
        )
    )
    print(
        markdown_table(["GPU training rate (H100, bf16)", "jets/s", "loader processes to feed it"], gpu_rows)
    )
    result = {"sizes": sizes, "loader_jets_per_s": loader, "gpu_jets_per_s": GPU_JETS_PER_S}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
