"""Cut the small bundled samples from the shared top-vs-QCD RNTuples.

Run from the repository root with ``../shared`` beside it::

    python tests/samples/make_samples.py

Writes ``tests/samples/topqcd_{split}_{top,qcd}.root`` as TTrees named ``tree``
with the same branch names as the shared files (jagged ``part_*`` branches share
the counter ``npart``), so the demo and tests run without ``../shared``.
"""

from __future__ import annotations

import pathlib

import awkward as ak
import uproot

SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "topqcd"
HERE = pathlib.Path(__file__).resolve().parent
#: (split, source file stem, number of jets taken from its start)
CUTS = [("train", "train_{}_0", 1000), ("val", "val_{}_0", 250), ("test", "test_{}_0", 500)]


def main() -> None:
    for split, stem, n_jets in CUTS:
        for sample in ("top", "qcd"):
            src = SHARED / f"{stem.format(sample)}.root"
            with uproot.open(src) as f:
                arrays = f["tree"].arrays(entry_stop=n_jets)
            jagged = [k for k in arrays.fields if k.startswith("part_")]
            flat = {k: arrays[k] for k in arrays.fields if k not in jagged}
            part = ak.zip({k[len("part_") :]: arrays[k] for k in jagged})
            out = HERE / f"topqcd_{split}_{sample}.root"
            with uproot.recreate(out) as f:
                tree = f.mktree(
                    "tree",
                    {**{k: v.type.content for k, v in flat.items()}, "part": part.type.content},
                    counter_name=lambda counted: "n" + counted,
                    field_name=lambda outer, inner: f"{outer}_{inner}" if outer else inner,
                )
                tree.extend({**flat, "part": part})
            print(f"{src.name}[:{n_jets}] -> {out.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
