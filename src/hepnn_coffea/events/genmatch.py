"""Columnar generator matching of fat jets to hadronic tops and W bosons (coffea ``GenPart``).

Definitions (``dr`` = 0.8 by default; Delta R with phi wrapped into [-pi, pi)):

- A *W* is a last-copy W (``|pdgId| == 24`` and ``hasFlags(["isLastCopy"])``); its decay
  products are its ``children``. It is *hadronic* when exactly two of them are quarks
  (``|pdgId|`` 1-5) and *leptonic* when one of them is a lepton (``|pdgId|`` 11-16, taus
  included whatever they decay to).
- A *top* is the ``distinctParent`` of a W (it skips the W's own copies) when that is a
  last-copy top (``|pdgId| == 6``); its *b* is its child with ``|pdgId| == 5``. A top is
  hadronic (leptonic) when its W is. The tops are reached through their Ws, which needs
  no global-index bookkeeping and also works when NanoAOD keeps several copies of the W.
- ``top`` match: the b and both W quarks of a hadronic top lie within ``dr`` of the jet axis.
- ``W`` match: both quarks of a hadronic W lie within ``dr`` and the jet is not top-matched.
  **The W may come from a top.** A ttbar jet holding only the W of a top (b outside the cone,
  common for top pT of 300-450 GeV) is a genuine two-prong W -> qq jet: mass near m_W, W-like
  substructure; calling it "top" would be wrong and calling it "unmatched" would throw away
  the W jets that a W tagger meets in ttbar. Callers that want W jets from W+jets only can
  drop ``w_from_top`` jets (or weight them separately).
- For jets that match neither, ``reason`` tells why (first that applies, see :class:`MatchReason`).
  "Near the jet" means: the top/W direction or any of its decay products within ``dr``.

Everything is columnar (awkward broadcasting over events x jets x W bosons x decay products);
events without jets or without generator particles are fine, and QCD events (only the
outgoing partons in ``GenPart``) give ``other_parton`` or ``no_parton`` jets.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import awkward as ak
import numpy as np

__all__ = ["MatchReason", "REASONS", "match_fatjets", "delta_r"]


class MatchReason(IntEnum):
    """Why a fat jet is (not) matched; the first that applies, in this order."""

    #: ``top`` or ``W`` is True.
    MATCHED = 0
    #: A hadronic top near the jet (its direction, b or a W quark within dr), not fully contained.
    TOP_PARTIAL = 1
    #: A hadronic W near the jet (its direction or a quark within dr), not both quarks contained.
    W_PARTIAL = 2
    #: A leptonically decaying W or top near the jet (direction, decay product or b within dr).
    LEPTONIC = 3
    #: Only a hard-process quark or gluon not from a top or W (QCD parton) within dr.
    OTHER_PARTON = 4
    #: No generator parton of the record near the jet (e.g. the recoil jet of W+jet).
    NO_PARTON = 5


#: Reason code -> name, e.g. ``REASONS[1] == "top_partial"``.
REASONS: dict[int, str] = {int(reason): reason.name.lower() for reason in MatchReason}


def delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    """Delta R = sqrt(Delta eta^2 + Delta phi^2), Delta phi wrapped into [-pi, pi); broadcasts."""
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.sqrt((eta1 - eta2) ** 2 + dphi**2)


def _in_range(abs_pdg: Any, low: int, high: int) -> Any:
    return (abs_pdg >= low) & (abs_pdg <= high)


def _w_candidates(genparts: Any) -> ak.Array:
    """events x Ws: direction, decay products, quarks, parent top and its b (plain records)."""
    last_copy = genparts.hasFlags(["isLastCopy"])
    ws = genparts[(abs(genparts.pdgId) == 24) & last_copy]
    products = ws.children
    abs_products = abs(products.pdgId)
    quarks = products[_in_range(abs_products, 1, 5)]
    mother = ws.distinctParent  # None for a W without parent (W+jets)
    from_top = ak.fill_none((abs(mother.pdgId) == 6) & mother.hasFlags(["isLastCopy"]), False)
    mother_children = mother.children
    b_quarks = mother_children[abs(mother_children.pdgId) == 5]
    return ak.zip(
        {
            "eta": ws.eta,
            "phi": ws.phi,
            "hadronic": ak.num(quarks, axis=2) == 2,
            "leptonic": ak.any(_in_range(abs_products, 11, 16), axis=2),
            "from_top": from_top,
            "top_eta": ak.where(from_top, mother.eta, np.nan),
            "top_phi": ak.where(from_top, mother.phi, np.nan),
            "q_eta": quarks.eta,
            "q_phi": quarks.phi,
            "prod_eta": products.eta,
            "prod_phi": products.phi,
            "b_eta": ak.fill_none(ak.mask(b_quarks.eta, from_top), [], axis=1),
            "b_phi": ak.fill_none(ak.mask(b_quarks.phi, from_top), [], axis=1),
        },
        depth_limit=2,
    )


def _other_partons(genparts: Any) -> Any:
    """Hard-process quarks and gluons whose distinct parent is neither a top nor a W."""
    abs_pdg = abs(genparts.pdgId)
    mother_pdg = ak.fill_none(abs(genparts.distinctParent.pdgId), 0)
    is_parton = _in_range(abs_pdg, 1, 5) | (abs_pdg == 21)
    not_from_top_or_w = (mother_pdg != 6) & (mother_pdg != 24)
    return genparts[is_parton & genparts.hasFlags(["fromHardProcess"]) & not_from_top_or_w]


def match_fatjets(jets: Any, genparts: Any, dr: float = 0.8) -> ak.Array:
    """Generator match of every fat jet to hadronic tops and W bosons.

    Parameters
    ----------
    jets : ak.Array
        ``events x jets`` with ``eta`` and ``phi`` (e.g. ``events.FatJet``).
    genparts : ak.Array
        ``events.GenPart`` of coffea NanoEvents (``NanoAODSchema``): needs ``children``,
        ``distinctParent`` and ``hasFlags``; same events as ``jets``.
    dr : float, optional
        Matching radius (Delta R), 0.8 by default.

    Returns
    -------
    ak.Array
        ``events x jets`` records (same jagged structure as ``jets``) with fields

        - ``top`` (bool): fully contained hadronic top;
        - ``W`` (bool): both quarks of a hadronic W contained, not top-matched;
        - ``w_from_top`` (bool): ``W`` and that W comes from a top;
        - ``reason`` (int8): :class:`MatchReason` code, 0 when ``top`` or ``W``, see :data:`REASONS`;
        - ``dr_top`` / ``dr_w`` (float64): Delta R to the nearest hadronic top / W, ``inf`` if none.

    Raises
    ------
    ValueError
        If ``dr`` is not positive or the two inputs have different numbers of events.
    """
    if not dr > 0:
        raise ValueError(f"dr must be positive, got {dr}")
    if len(jets) != len(genparts):
        raise ValueError(f"jets ({len(jets)} events) and genparts ({len(genparts)} events) differ")
    axes = ak.zip({"eta": jets.eta, "phi": jets.phi})
    pairs = ak.cartesian({"jet": axes, "w": _w_candidates(genparts)}, axis=1, nested=True)
    jet, w = pairs.jet, pairs.w  # events x jets x Ws

    def near(eta: Any, phi: Any) -> Any:
        return delta_r(jet.eta, jet.phi, eta, phi) < dr

    quarks_in = ak.sum(near(w.q_eta, w.q_phi), axis=3)
    b_in = ak.any(near(w.b_eta, w.b_phi), axis=3)
    product_in = ak.any(near(w.prod_eta, w.prod_phi), axis=3)
    dr_w_axis = delta_r(jet.eta, jet.phi, w.eta, w.phi)
    dr_top_axis = delta_r(jet.eta, jet.phi, w.top_eta, w.top_phi)  # NaN when not from a top
    w_near = (dr_w_axis < dr) | product_in
    top_near = w.from_top & ((dr_top_axis < dr) | b_in | w_near)

    w_full = w.hadronic & (quarks_in == 2)
    top = ak.any(w_full & w.from_top & b_in, axis=2)
    w_match = ak.any(w_full, axis=2) & ~top
    w_from_top = ~top & ak.any(w_full & w.from_top, axis=2)
    top_partial = ak.any(w.hadronic & top_near, axis=2)
    w_partial = ak.any(w.hadronic & w_near, axis=2)
    leptonic = ak.any(w.leptonic & (w_near | top_near), axis=2)
    partons = _other_partons(genparts)
    parton_pairs = ak.cartesian(
        {"jet": axes, "parton": ak.zip({"eta": partons.eta, "phi": partons.phi})}, axis=1, nested=True
    )
    other_parton = ak.any(
        delta_r(parton_pairs.jet.eta, parton_pairs.jet.phi, parton_pairs.parton.eta, parton_pairs.parton.phi)
        < dr,
        axis=2,
    )

    reason = ak.full_like(jets.eta, int(MatchReason.NO_PARTON), dtype=np.int8)
    for flag, code in (
        (other_parton, MatchReason.OTHER_PARTON),
        (leptonic, MatchReason.LEPTONIC),
        (w_partial, MatchReason.W_PARTIAL),
        (top_partial, MatchReason.TOP_PARTIAL),
        (top | w_match, MatchReason.MATCHED),
    ):  # lowest priority first
        reason = ak.where(flag, np.int8(code), reason)

    def nearest(dr_axis: Any, keep: Any) -> Any:
        return ak.fill_none(ak.min(ak.where(keep, dr_axis, np.inf), axis=2), np.inf)

    return ak.zip(
        {
            "top": top,
            "W": w_match,
            "w_from_top": w_from_top,
            "reason": ak.values_astype(reason, np.int8),
            "dr_top": nearest(dr_top_axis, w.hadronic & w.from_top),
            "dr_w": nearest(dr_w_axis, w.hadronic),
        }
    )
