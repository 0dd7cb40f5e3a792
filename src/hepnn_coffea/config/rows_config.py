"""The ``rows:`` section of a data config: training rows from event-level NanoAOD.

A flat jet tree has one entry per jet. An analysis' NanoAOD has events, each with
several fat jets, their constituents behind an index collection and a generator
record. With a ``rows:`` section one training row is one element of a collection
(``collection: FatJet``) and the data config's expressions (``selection``,
``new_variables``, inputs, observers) are written over the *row fields*:

``<collection>_<field>``
    the row's own fields, e.g. ``FatJet_pt``, ``FatJet_msoftdrop``;
``PFCand_<field>``
    the row's constituents (jagged), gathered through the layout's index collection
    (``nanoaod``: ``FatJetPFCand`` -> ``PFCand``; ``pfnano``: ``FatJetPFCands`` -> ``PFCands``);
    the row-field prefix is ``PFCand_`` in both layouts, so one config serves both;
event fields
    ``run``, ``luminosityBlock``, ``event``, ``genWeight`` (``event_fields``), one value per row;
generated fields
    ``<collection lower>_index`` (position of the jet in its event), ``xsec_weight``
    (``genWeight * xsec * lumi / sum(genWeight)`` of the row's dataset) and, with
    ``gen_match``, one 0/1 field per class (``top``, ``W``, ``QCD``) and ``match_reason``.

Example::

    rows:
      collection: FatJet
      layout: nanoaod
      event_fields: [run, luminosityBlock, event, genWeight]
      split: {train: 0.6, val: 0.1, test: 0.3}
      split_seed: 0
      lumi: 1000.0                 # pb^-1 for xsec_weight
      gen_match: {dr: 0.8, background_processes: [qcd]}

Rows of one event never straddle splits: the split is a deterministic hash of
(run, luminosityBlock, event, split_seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: (index collection, candidate collection, jet-index field, candidate-index field) per layout
LAYOUTS: dict[str, tuple[str, str, str, str]] = {
    "nanoaod": ("FatJetPFCand", "PFCand", "jetIdx", "pfCandIdx"),
    "pfnano": ("FatJetPFCands", "PFCands", "jetIdx", "pFCandsIdx"),
}
#: prefix of the constituent row fields, whatever the layout's candidate collection is called
CANDIDATE_PREFIX = "PFCand_"
#: the classes gen matching can produce (signal matches, and the background processes)
GEN_CLASSES = ("top", "W", "QCD")
SPLIT_NAMES = ("train", "val", "test")
_KEYS = {"collection", "layout", "event_fields", "split", "split_seed", "lumi", "gen_match"}
_GEN_KEYS = {"dr", "background_processes"}


class RowsConfigError(ValueError):
    """The ``rows`` section is invalid; the message names the key."""


@dataclass(frozen=True)
class GenMatchConfig:
    """Labels from generator matching: ``top``/``W`` by Delta R, ``QCD`` by process."""

    dr: float = 0.8
    background_processes: tuple[str, ...] = ("qcd",)

    def to_dict(self) -> dict[str, Any]:
        return {"dr": self.dr, "background_processes": list(self.background_processes)}


@dataclass(frozen=True)
class RowsConfig:
    """Typed ``rows`` section (see the module docstring)."""

    collection: str = "FatJet"
    layout: str = "nanoaod"
    event_fields: tuple[str, ...] = ("run", "luminosityBlock", "event", "genWeight")
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.6, "val": 0.1, "test": 0.3})
    split_seed: int = 0
    lumi: float = 1000.0
    gen_match: GenMatchConfig | None = None

    # ------------------------------------------------------------------ names
    @property
    def jet_prefix(self) -> str:
        return f"{self.collection}_"

    @property
    def index_field(self) -> str:
        """Row field with the jet's position in its event's collection (``fatjet_index``)."""
        return f"{self.collection.lower()}_index"

    @property
    def index_collection(self) -> str:
        return LAYOUTS[self.layout][0]

    @property
    def candidate_collection(self) -> str:
        return LAYOUTS[self.layout][1]

    def generated_fields(self) -> list[str]:
        """Row fields computed here rather than read from a branch."""
        names = [self.index_field, "xsec_weight"]
        if self.gen_match is not None:
            names += [*GEN_CLASSES, "match_reason"]
        return names

    def row_fields(self, names: list[str]) -> dict[str, list[str]]:
        """Sort row-field names by origin: ``jet``/``candidate`` fields (without prefix), ``event``,
        ``generated``.

        Raises
        ------
        RowsConfigError
            A name is none of these (the message names it and lists the valid forms).
        """
        out: dict[str, list[str]] = {"jet": [], "candidate": [], "event": [], "generated": []}
        generated = set(self.generated_fields())
        for name in names:
            if name in generated:
                out["generated"].append(name)
            elif name in self.event_fields:
                out["event"].append(name)
            elif name.startswith(self.jet_prefix) and len(name) > len(self.jet_prefix):
                out["jet"].append(name[len(self.jet_prefix) :])
            elif name.startswith(CANDIDATE_PREFIX) and len(name) > len(CANDIDATE_PREFIX):
                out["candidate"].append(name[len(CANDIDATE_PREFIX) :])
            else:
                raise RowsConfigError(
                    f"'{name}' is not a row field: use {self.jet_prefix}<field>, {CANDIDATE_PREFIX}<field>, "
                    f"an event field {list(self.event_fields)} or one of {sorted(generated)}"
                )
        return out

    def file_branches(self, names: list[str]) -> list[str]:
        """The NanoAOD branches read to build the row fields ``names``."""
        kinds = self.row_fields(names)
        index, cands, jet_idx, cand_idx = LAYOUTS[self.layout]
        branches = [f"n{self.collection}", *(f"{self.jet_prefix}{f}" for f in kinds["jet"]), *kinds["event"]]
        if kinds["candidate"]:
            branches += [f"n{index}", f"{index}_{jet_idx}", f"{index}_{cand_idx}", f"n{cands}"]
            branches += [f"{cands}_{f}" for f in kinds["candidate"]]
        for key in ("run", "luminosityBlock", "event"):  # the event-wise split
            branches.append(key)
        if "xsec_weight" in kinds["generated"]:
            branches.append("genWeight")
        if self.gen_match is not None and set(kinds["generated"]) & {*GEN_CLASSES, "match_reason"}:
            branches += ["nGenPart"] + [
                f"GenPart_{f}"
                for f in ("pt", "eta", "phi", "mass", "pdgId", "status", "statusFlags", "genPartIdxMother")
            ]
            branches += [f"{self.jet_prefix}{f}" for f in ("pt", "eta", "phi", "mass")]
        return list(dict.fromkeys(branches))

    # ---------------------------------------------------------------- parsing
    @classmethod
    def from_dict(cls, raw: Any, source: str) -> RowsConfig:
        where = f"{source}: rows"
        if not isinstance(raw, dict):
            raise RowsConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
        _unknown(raw, _KEYS, where)
        collection = _identifier(raw.get("collection", "FatJet"), f"{where}.collection")
        layout = str(raw.get("layout", "nanoaod"))
        if layout not in LAYOUTS:
            raise RowsConfigError(f"{where}.layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        event_fields = raw.get("event_fields", list(cls.event_fields))
        if not isinstance(event_fields, list):
            raise RowsConfigError(f"{where}.event_fields must be a list of branch names")
        event_fields = tuple(_identifier(f, f"{where}.event_fields") for f in event_fields)
        split = raw.get("split", {"train": 0.6, "val": 0.1, "test": 0.3})
        if not isinstance(split, dict) or not split:
            raise RowsConfigError(f"{where}.split must map train/val/test to fractions")
        _unknown(split, set(SPLIT_NAMES), f"{where}.split")
        fractions = {k: _number(v, f"{where}.split.{k}") for k, v in split.items()}
        if any(v < 0 for v in fractions.values()) or not math.isclose(
            sum(fractions.values()), 1.0, abs_tol=1e-9
        ):
            raise RowsConfigError(f"{where}.split fractions must be >= 0 and sum to 1, got {fractions}")
        seed = raw.get("split_seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise RowsConfigError(f"{where}.split_seed must be an integer, got {seed!r}")
        lumi = _number(raw.get("lumi", 1000.0), f"{where}.lumi")
        if lumi <= 0:
            raise RowsConfigError(f"{where}.lumi must be > 0, got {lumi}")
        gen = raw.get("gen_match")
        gen_match = None
        if gen is not None:
            if not isinstance(gen, dict):
                raise RowsConfigError(f"{where}.gen_match must be a mapping")
            _unknown(gen, _GEN_KEYS, f"{where}.gen_match")
            dr = _number(gen.get("dr", 0.8), f"{where}.gen_match.dr")
            if dr <= 0:
                raise RowsConfigError(f"{where}.gen_match.dr must be > 0, got {dr}")
            background = gen.get("background_processes", ["qcd"])
            if not isinstance(background, list) or not all(isinstance(p, str) for p in background):
                raise RowsConfigError(
                    f"{where}.gen_match.background_processes must be a list of process names"
                )
            gen_match = GenMatchConfig(dr, tuple(background))
        return cls(collection, layout, event_fields, fractions, seed, lumi, gen_match)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "collection": self.collection,
            "layout": self.layout,
            "event_fields": list(self.event_fields),
            "split": dict(self.split),
            "split_seed": self.split_seed,
            "lumi": self.lumi,
        }
        if self.gen_match is not None:
            out["gen_match"] = self.gen_match.to_dict()
        return out


def _unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise RowsConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise RowsConfigError(f"{where}: expected a branch/collection name, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowsConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)
