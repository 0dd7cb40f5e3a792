"""Focused-track point clouds (JetPointNet samples) from calorimeter-view files: a coffea processor.

One sample per charged track with pT above a threshold that reaches the calorimeter: the cells
and other tracks within Delta R < 0.2 of its impact point, as points sorted by distance (the
focused track first; truncation to the data-derived length drops the farthest points), with the
per-cell label = energy the focused particle deposited there (-1 on track points). Details in
:mod:`hepnn_coffea.calo.samples`.

Example (no command line needed)::

    from coffea import processor
    from coffea.nanoevents import BaseSchema
    from processors.focused_track_samples import FocusedTrackSampleProcessor

    fileset = {"top": {"files": {"calo_view/test/top/<chunk>.root": "tree"},
                       "metadata": {"split": "test", "sample": "top"}}}
    runner = processor.Runner(processor.IterativeExecutor(), schema=BaseSchema, chunksize=2000)
    out = runner(fileset, FocusedTrackSampleProcessor("calo_samples/", pt_min=2.0))
    print(out["chunks"][0]["samples"], "samples in", out["chunks"][0]["output"])

or, from a calorimeter-view folder and with a manifest,
:func:`hepnn_coffea.calo.samples.focused_track_samples`.
"""

from hepnn_coffea.calo.samples import FocusedTrackSampleProcessor, build_samples, focused_track_samples

__all__ = ["FocusedTrackSampleProcessor", "build_samples", "focused_track_samples"]
