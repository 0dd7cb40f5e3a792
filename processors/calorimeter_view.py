"""Calorimeter view of particle-level jets: a coffea processor writing one ROOT file per chunk.

A *simplified detector*, not a simulation (the list of simplifications is in
:mod:`hepnn_coffea.calo`): charged particles above 0.5 GeV become tracks extrapolated on a
helix (3.8 T) to the EM surface; every particle deposits energy in an EM layer (0.025 cells)
and a hadronic layer (0.1 cells) with a Gaussian lateral profile, sampling fluctuations and
cell noise with a threshold; all constants in ``models/data/calo_geometry.yaml``; the output
depends only on (seed, geometry, file, entry range).

Output tree ``tree`` (one entry per jet): ``track_*``, ``cell_*`` (eta, phi, layer, x, y, z, E,
noise, main_particle), ``contrib_cell/contrib_particle/contrib_energy`` (truth contributions),
``part_*`` (incl. ``part_deposited_energy``, ``part_below_threshold_energy``) and the jet branches.

Example (no command line needed)::

    from coffea import processor
    from coffea.nanoevents import BaseSchema
    from processors.calorimeter_view import CalorimeterViewProcessor

    fileset = {"top": {"files": {"tests/samples/topqcd_test_top.root": "tree"},
                       "metadata": {"split": "test", "sample": "top"}}}
    runner = processor.Runner(processor.IterativeExecutor(), schema=BaseSchema, chunksize=2000)
    out = runner(fileset, CalorimeterViewProcessor("calo_view/", seed=1))
    print(out["chunks"][0]["cells"], "cells in", out["chunks"][0]["output"])

or, with the manifest, :func:`hepnn_coffea.calo.calorimeter_view`.
"""

from hepnn_coffea.calo.processor import CalorimeterViewProcessor, view_file_name

__all__ = ["CalorimeterViewProcessor", "view_file_name"]
