"""Pack a per-point shard folder into a few compressed files for carrying, and unpack it.

Per-point shards (``preprocess`` output) are padded to the data-derived length and stored as
float32 records, ~4x larger than the samples they come from. For carrying them to a training
machine (where the calorimeter simulation and the preprocessing cannot run: no uproot/coffea)
:func:`pack` keeps only the real points of every row (the ``mask`` group gives the lengths),
stores point features as float16 (``--exact`` keeps float32; 0/1 columns as uint8) and the
energy / target groups as float32, and compresses (``np.savez_compressed``). :func:`unpack`
rebuilds the same record arrays (padding restored with each field's pad value) and copies the
manifest, data config and standardization, so :func:`hepnn_coffea.training.trainer.train`
reads the result like the original folder. Needs only NumPy.

Usage::

    python bench/shard_pack.py pack SHARDS PACKED [--splits train,val] [--exact-groups energy]
    python bench/shard_pack.py unpack PACKED SHARDS
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

import numpy as np

META = ("manifest.json", "data_config.yaml", "standardization.json")


def _shards(manifest: dict, splits: list[str]) -> list[str]:
    return [s["path"] for split in splits for e in manifest["splits"].get(split, {}).values() for s in e["shards"]]


def pack(shards: str | pathlib.Path, packed: str | pathlib.Path, *, splits: tuple[str, ...] = ("train", "val"),
         mask_field: str = "inputs/mask", exact: tuple[str, ...] = ("inputs/energy", "target")) -> dict:  # fmt: skip
    """Write ``packed/<n>.npz`` per shard of ``splits`` plus the metadata files; returns sizes.

    Fields with a trailing point axis keep only the first ``length`` points of each row
    (``length`` = non-zero ``mask_field`` entries; the padded part must hold one constant per
    field, checked). Point fields not in ``exact`` are stored as float16 (uint8 when all 0/1).
    The manifest keeps only ``splits``.
    """
    src, dst = pathlib.Path(shards), pathlib.Path(packed)
    dst.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["splits"] = {k: v for k, v in manifest["splits"].items() if k in splits}
    index = []
    for i, rel in enumerate(_shards(manifest, list(splits))):
        rec = np.load(src / rel, mmap_mode="r")
        length = int(rec.dtype[mask_field].shape[-1])
        lengths = (np.asarray(rec[mask_field]).reshape(len(rec), -1) != 0).sum(axis=1)
        real = np.arange(length)[None, :] < lengths[:, None]
        arrays: dict[str, np.ndarray] = {"lengths": lengths.astype(np.int32)}
        fields = []
        for name in rec.dtype.names:
            a = np.asarray(rec[name])
            entry = {"name": name, "dtype": rec.dtype[name].base.str, "shape": list(rec.dtype[name].shape)}
            if a.ndim >= 2 and a.shape[-1] == length:
                pad = np.moveaxis(a, -1, 1)[~real]  # (n_pad, ...)
                pad_values = np.unique(pad) if pad.size else np.zeros(1, a.dtype)
                if len(pad_values) != 1:
                    raise ValueError(f"{rel}: field {name!r} has several values on padding: {pad_values[:5]}")
                flat = np.moveaxis(a, -1, 1)[real]  # (n_points, ...)
                if name == mask_field and np.all(flat == 1):
                    entry["kind"] = "ones"
                else:
                    binary = np.isin(flat, (0.0, 1.0)).all()
                    store = np.uint8 if binary else (flat.dtype if name in exact else np.float16)
                    arrays[f"f{len(fields)}"] = flat.astype(store)
                    entry["kind"] = "points"
                entry["pad"] = float(pad_values[0])
            else:
                arrays[f"f{len(fields)}"] = a
                entry["kind"] = "row"
            fields.append(entry)
        np.savez_compressed(dst / f"{i:04d}.npz", **arrays)
        index.append({"path": rel, "rows": len(rec), "length": length, "fields": fields})
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for name in META[1:]:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    (dst / "pack_index.json").write_text(json.dumps(index, indent=1))
    sizes = {p.name: p.stat().st_size for p in dst.iterdir()}
    return {"files": len(index), "bytes": sum(sizes.values())}


def unpack(packed: str | pathlib.Path, shards: str | pathlib.Path) -> int:
    """Rebuild the shard folder written by :func:`pack`; returns the number of rows."""
    src, dst = pathlib.Path(packed), pathlib.Path(shards)
    index = json.loads((src / "pack_index.json").read_text())
    rows = 0
    for i, item in enumerate(index):
        data = np.load(src / f"{i:04d}.npz")
        lengths, n, length = data["lengths"], item["rows"], item["length"]
        real = np.arange(length)[None, :] < lengths[:, None]
        dtype = np.dtype([(f["name"], f["dtype"], tuple(f["shape"])) for f in item["fields"]])
        rec = np.zeros(n, dtype=dtype)
        for j, f in enumerate(item["fields"]):
            if f["kind"] == "row":
                rec[f["name"]] = data[f"f{j}"]
                continue
            full = np.full((n, length, *f["shape"][:-1]), f["pad"], dtype=f["dtype"])
            full[real] = 1.0 if f["kind"] == "ones" else data[f"f{j}"]
            rec[f["name"]] = np.moveaxis(full, 1, -1)
        out = dst / item["path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, rec, allow_pickle=False)
        rows += n
    for name in META:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("shards")
    p.add_argument("packed")
    p.add_argument("--splits", default="train,val")
    u = sub.add_parser("unpack")
    u.add_argument("packed")
    u.add_argument("shards")
    args = ap.parse_args()
    if args.cmd == "pack":
        print(pack(args.shards, args.packed, splits=tuple(args.splits.split(","))))
    else:
        print("rows:", unpack(args.packed, args.shards))


if __name__ == "__main__":
    main()
