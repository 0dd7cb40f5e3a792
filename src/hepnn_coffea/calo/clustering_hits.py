"""The hits of calorimeter-view jets, as the hit-clustering model sees them.

Hits are those of ``models/data/calo_clustering.yaml`` in the same order (tracks reaching the
calorimeter, then cells above ``cell_threshold`` by descending energy): :func:`view_hits`.
:data:`HIT_BRANCHES` are the view branches it reads.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.calo.focused_tracks import delta_phi

__all__ = ["HIT_BRANCHES", "view_hits"]


def view_hits(events: Any, cell_threshold: float = 0.3) -> ak.Array:
    """Per jet, the hits of the clustering data config (same selection and order), jagged.

    Fields: ``deta``, ``dphi`` (to the jet axis; eta flipped for negative-eta jets as in the data
    config), ``energy`` (0 for tracks), ``is_track``, ``is_em``, ``particle`` (truth cluster =
    particle index in the jet), ``type`` (its ``part_type``).
    """
    keep = events["cell_E"] > cell_threshold
    order = ak.argsort(events["cell_E"][keep], axis=1, ascending=False, stable=True)
    cell = {k: events[f"cell_{k}"][keep][order] for k in ("E", "eta", "phi", "layer", "main_particle")}
    tk = events["track_reaches_calo"] > 0
    trk = {k: events[f"track_{k}"][tk] for k in ("calo_eta", "calo_phi", "particle")}
    sign = np.where(ak.to_numpy(events["jet_eta"]) >= 0, 1, -1)
    eta = ak.concatenate([trk["calo_eta"], cell["eta"]], axis=1)
    phi = ak.concatenate([trk["calo_phi"], cell["phi"]], axis=1)
    particle = ak.concatenate([trk["particle"], cell["main_particle"]], axis=1)
    return ak.zip(
        {
            "deta": (eta - events["jet_eta"]) * sign,
            "dphi": delta_phi(phi, events["jet_phi"]),
            "energy": ak.concatenate([ak.zeros_like(trk["calo_eta"]), cell["E"]], axis=1),
            "is_track": ak.concatenate(
                [ak.ones_like(trk["particle"]), ak.zeros_like(cell["main_particle"])], axis=1
            ),
            "is_em": ak.concatenate(
                [ak.zeros_like(trk["particle"]), ak.values_astype(cell["layer"] == 0, np.int64)], axis=1
            ),
            "particle": particle,
            "type": events["part_type"][particle],
        }
    )


#: Branches of a calorimeter view that :func:`view_hits` reads.
HIT_BRANCHES = (
    "cell_E",
    "cell_eta",
    "cell_phi",
    "cell_layer",
    "cell_main_particle",
    "track_reaches_calo",
    "track_calo_eta",
    "track_calo_phi",
    "track_particle",
    "jet_eta",
    "jet_phi",
    "part_type",
)
