"""Cut the small bundled NanoAOD-like samples from the shared ``nanosim`` files.

Run from the repository root with ``../shared`` beside it::

    python tests/samples/make_nanosim_samples.py

For every dataset of ``../shared/data/nanosim/fileset.json`` it takes the first events of the
``<dataset>_0.root`` file and writes ``tests/samples/nanosim_<dataset>.root``: an ``Events``
TTree with the same branch names and types (jagged ``<Collection>_*`` branches with their
``n<Collection>`` counters, as NanoAOD has them; doubles stay doubles; LZMA like the
source). ``tests/samples/nanosim_fileset.json`` keeps the shared metadata but sets ``nevents``
and ``sumw`` to the events actually cut, so ``xsec * lumi / sumw`` stays the per-event weight.

The script then checks that coffea's ``NanoAODSchema`` opens every output with ``GenPart``
navigation, and that the samples hold enough matched jets with FatJet pT > 300 GeV
(``MIN_MATCHED`` top jets and W jets) and stay under ``MAX_TOTAL_BYTES``.
"""

from __future__ import annotations

import json
import pathlib

import awkward as ak
import uproot

HERE = pathlib.Path(__file__).resolve().parent
NANOSIM = HERE.parents[2] / "shared" / "data" / "nanosim"
#: dataset -> events cut from the start of its ``_0`` file (more boosted tops and Ws, fewer QCD events)
N_EVENTS = {
    "ttbar_250to400": 250,
    "ttbar_400toInf": 400,
    "wqq": 350,
    "qcd_250to400": 200,
    "qcd_400to600": 200,
    "qcd_600to800": 200,
    "qcd_800toInf": 200,
}
MIN_MATCHED = 150
MIN_PT = 300.0
MAX_TOTAL_BYTES = 2_500_000


def cut_dataset(source: pathlib.Path, target: pathlib.Path, n_events: int) -> int:
    """Write the first ``n_events`` of ``source``'s ``Events`` tree to ``target``; return how many."""
    with uproot.open(source) as f:
        tree = f["Events"]
        prefixes = {name.split("_", 1)[0] for name in tree.keys() if "_" in name}
        # counters are left out: mktree writes them back from the jagged collections
        names = [name for name in tree.keys() if not (name.startswith("n") and name[1:] in prefixes)]
        arrays = tree.arrays(names, entry_stop=n_events, how=dict)
    collections: dict[str, dict[str, ak.Array]] = {}
    flat: dict[str, ak.Array] = {}
    for name, array in arrays.items():
        if array.ndim > 1:
            outer, inner = name.split("_", 1)
            collections.setdefault(outer, {})[inner] = array
        else:
            flat[name] = array
    columns = {**{outer: ak.zip(fields) for outer, fields in collections.items()}, **flat}
    with uproot.recreate(target, compression=uproot.LZMA(6)) as f:
        out = f.mktree(
            "Events",
            {name: column.type.content for name, column in columns.items()},
            counter_name=lambda counted: "n" + counted,
            field_name=lambda outer, inner: f"{outer}_{inner}" if outer else inner,
        )
        out.extend(columns)
    return len(flat["event"])


def check_sample(path: pathlib.Path, source: pathlib.Path) -> dict[str, int]:
    """Assert branch names/types match the source and NanoAODSchema navigates ``GenPart``; count matches."""
    import warnings

    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from hepnn_coffea.events.genmatch import match_fatjets

    with uproot.open(path) as f, uproot.open(source) as g:
        written = {k: str(b.interpretation) for k, b in f["Events"].items()}
        original = {k: str(b.interpretation) for k, b in g["Events"].items()}
    assert written == original, {k: (written.get(k), original.get(k)) for k in set(written) ^ set(original)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        factory = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager")
        events = factory.events()
    n_children = ak.num(events.GenPart.children, axis=2)  # each particle with a mother is one child
    assert ak.sum(n_children) == ak.sum(events.GenPart.genPartIdxMother >= 0)
    matched = ak.flatten(match_fatjets(events.FatJet, events.GenPart))[ak.flatten(events.FatJet.pt > MIN_PT)]
    return {
        "events": len(events),
        "jets": len(matched),
        "top": int(ak.sum(matched.top)),
        "W": int(ak.sum(matched.W)),
        "unmatched": int(ak.sum(matched.reason != 0)),
    }


def main() -> None:
    shared_fileset = json.loads((NANOSIM / "fileset.json").read_text())
    fileset = {}
    totals = {"top": 0, "W": 0, "bytes": 0}
    for dataset, n_events in N_EVENTS.items():
        source = NANOSIM / f"{dataset}_0.root"
        target = HERE / f"nanosim_{dataset}.root"
        n_written = cut_dataset(source, target, n_events)
        metadata = dict(shared_fileset[dataset]["metadata"], nevents=n_written, sumw=float(n_written))
        fileset[dataset] = {"files": {target.name: "Events"}, "metadata": metadata}
        counts = check_sample(target, source)
        size = target.stat().st_size
        totals["top"] += counts["top"]
        totals["W"] += counts["W"]
        totals["bytes"] += size
        print(
            f"{source.name}[:{n_written}] -> {target.relative_to(HERE.parents[1])} ({size / 1e3:.0f} kB): "
            f"pT > {MIN_PT:.0f}: {counts}"
        )
    (HERE / "nanosim_fileset.json").write_text(json.dumps(fileset, indent=1) + "\n")
    print(f"total: {totals}")
    assert totals["top"] >= MIN_MATCHED and totals["W"] >= MIN_MATCHED, totals
    assert totals["bytes"] < MAX_TOTAL_BYTES, totals


if __name__ == "__main__":
    main()
