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
* ``focused_tracks`` and ``samples``: focused-track samples for per-point energy regression (the
  point clouds and ``delta_phi``; the processor, the stage and ``calo_fileset``, the one
  folder/manifest -> coffea fileset helper);
* ``per_point_eval`` (with ``per_point_baselines`` and ``per_point_metrics``) and ``plots``:
  evaluation and figures of the per-point regression;
* ``clustering_model`` (the hit-clustering transformer, registered in the zoo as
  ``hit_clustering``), ``clustering_eval`` (with ``clustering_hits``, ``clustering_metrics`` and
  ``clustering_methods``) and ``clustering_plots``: hit clustering.

Both evaluations follow the evaluation protocol (:mod:`hepnn_coffea.evaluation.protocol`).
Names are imported on first use.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    # the view
    "calorimeter_view": "hepnn_coffea.calo.stage:calorimeter_view",
    "CalorimeterViewProcessor": "hepnn_coffea.calo.processor:CalorimeterViewProcessor",
    "CaloGeometry": "hepnn_coffea.calo.geometry:CaloGeometry",
    "GeometryError": "hepnn_coffea.calo.geometry:GeometryError",
    "load_geometry": "hepnn_coffea.calo.geometry:load_geometry",
    "build_view": "hepnn_coffea.calo.view:build_view",
    "chunk_rng": "hepnn_coffea.calo.view:chunk_rng",
    "view_counts": "hepnn_coffea.calo.view:view_counts",
    "write_view": "hepnn_coffea.calo.view:write_view",
    # focused-track samples and the per-point evaluation
    "focused_track_samples": "hepnn_coffea.calo.samples:focused_track_samples",
    "FocusedTrackSampleProcessor": "hepnn_coffea.calo.samples:FocusedTrackSampleProcessor",
    "calo_fileset": "hepnn_coffea.calo.samples:calo_fileset",
    "evaluate_per_point": "hepnn_coffea.calo.per_point_eval:evaluate_per_point",
    "summarize_per_point": "hepnn_coffea.calo.per_point_eval:summarize_per_point",
    "PerPointEvaluationProcessor": "hepnn_coffea.calo.per_point_eval:PerPointEvaluationProcessor",
    "plot_per_point": "hepnn_coffea.calo.plots:plot_per_point",
    # hit clustering
    "HitClusteringProcessor": "hepnn_coffea.calo.clustering_eval:HitClusteringProcessor",
    "run_clustering_evaluation": "hepnn_coffea.calo.clustering_eval:run_clustering_evaluation",
    "summarize_clustering": "hepnn_coffea.calo.clustering_eval:summarize",
    "BaselineParams": "hepnn_coffea.calo.clustering_methods:BaselineParams",
    "view_hits": "hepnn_coffea.calo.clustering_hits:view_hits",
    "plot_clustering": "hepnn_coffea.calo.clustering_plots:plot_clustering",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
