"""A simplified calorimeter view of particle-level jets (tracks, cells, truth contributions).

Simplifications (documented choices, not a detector simulation):

* a barrel of two thin cylinders (EM at 1.5 m, hadronic at 2.0 m) extended to ``|eta| < 3``,
  no endcap discs, no material before the calorimeter, particles from the origin;
* charged particles follow a helix in a uniform 3.8 T field up to the EM surface (loopers are
  flagged and deposit nothing); the shower axis of both layers is the impact point on the EM
  surface (no bending inside the calorimeter); neutrals go straight;
* a particle's energy is split between EM and HAD by type (photons/electrons ~all EM, hadrons
  a fluctuating split, muons MIP-like), smeared with a per-layer sampling + constant term,
  spread with a Gaussian lateral profile over a fixed window of cells;
* noise is Gaussian per cell and only simulated on cells with a deposit; cells under a
  threshold in noise sigmas are dropped, their truth energy booked per particle.

All constants are in :class:`CaloGeometry` (``models/data/calo_geometry.yaml``). Results depend
only on (seed, geometry, file, entry range).

The calorimeter workflows live here as one domain package (as coffea keeps ``jetmet_tools``),
built on the core's stages (preprocess / train / export / ``OnnxTagger``):

* ``view``, ``deposit``, ``tracks``, ``geometry``, ``processor``, ``stage``: the view itself;
* ``samples``: focused-track samples for per-point energy regression, ``calo_fileset`` (the one
  folder/manifest -> coffea fileset helper) and ``delta_phi``;
* ``per_point_eval`` and ``plots``: evaluation and figures of the per-point regression;
* ``clustering_model`` (the hit-clustering transformer, registered in the zoo as
  ``hit_clustering``), ``clustering_eval`` and ``clustering_plots``: hit clustering.
"""

from hepnn_coffea.calo.geometry import CaloGeometry, GeometryError, load_geometry
from hepnn_coffea.calo.processor import CalorimeterViewProcessor
from hepnn_coffea.calo.stage import calorimeter_view
from hepnn_coffea.calo.view import build_view, chunk_rng, view_counts, write_view

__all__ = [
    "CaloGeometry", "CalorimeterViewProcessor", "GeometryError", "build_view", "calorimeter_view",
    "chunk_rng", "load_geometry", "view_counts", "write_view",
]  # fmt: skip
