"""Particle types, tracks and the extrapolation of particles to the calorimeter surface.

All functions work on flat NumPy arrays (one entry per particle of a chunk); the
caller flattens the jagged particle arrays and unflattens the results.

Helix extrapolation
-------------------
A particle of charge ``q`` (units of e) and transverse momentum ``pT`` [GeV] leaving the
origin in a solenoidal field ``B`` [T] along +z moves on a circle of radius
``R = pT / (0.3 |q| B)`` [m] in the transverse plane. It reaches the cylinder of radius
``r`` only if ``r <= 2 R`` (else it curls inside, "looper": flagged, no impact point).
At the crossing the chord from the origin turns by half the bending angle, so the
azimuth of the impact point is::

    phi_impact = phi_0 - q * asin(0.3 * B * r / (2 * pT))      (~ phi_0 - q 0.15 B r / pT)

(positive charges bend clockwise, towards smaller phi, for B along +z). The
transverse arc length is ``s = 2 R asin(r / 2R)`` and ``z = s * pz / pT``; the impact
pseudorapidity is that of the point, ``asinh(z / r)``. Neutral particles (and
``B = 0``) go straight: ``phi_impact = phi_0``, ``z = r pz / pT``.
"""

from __future__ import annotations

import numpy as np

from hepnn_coffea.calo.geometry import (
    CHARGED_HADRON,
    ELECTRON,
    INVISIBLE,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    CaloGeometry,
)

_NEUTRINOS = (12, 14, 16)


def particle_types(pid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Type code per particle (:data:`~hepnn_coffea.calo.geometry.PHOTON`, ...), from |PDG id| and charge."""
    apid = np.abs(np.asarray(pid))
    charged = np.asarray(charge) != 0
    out = np.where(charged, CHARGED_HADRON, NEUTRAL_HADRON).astype(np.int32)
    out[apid == 22] = PHOTON
    out[apid == 11] = ELECTRON
    out[apid == 13] = MUON
    out[np.isin(apid, _NEUTRINOS)] = INVISIBLE
    return out


def phi_shift(pt: np.ndarray, charge: np.ndarray, radius: float, b_field: float) -> np.ndarray:
    """Analytic azimuth shift of the impact point, ``-q asin(0.3 B r / 2 pT)`` (NaN for loopers)."""
    pt = np.asarray(pt, dtype=np.float64)
    charge = np.asarray(charge, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        arg = 0.3 * b_field * radius * np.abs(charge) / (2 * pt)
        return np.where(arg <= 1, -np.sign(charge) * np.arcsin(np.minimum(arg, 1)), np.nan)


def extrapolate(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, charge: np.ndarray, radius: float, b_field: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Impact point of each particle on the cylinder of ``radius`` (helix, or straight if neutral).

    Returns
    -------
    eta, phi, z, reaches
        Pseudorapidity and azimuth of the impact point, its z [m], and whether the particle
        reaches the cylinder (False for loopers and for pT = 0; their eta/phi/z are NaN).
    """
    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    charge = np.asarray(charge, dtype=np.float64)
    pt = np.hypot(px, py)
    phi0 = np.arctan2(py, px)
    bending = (charge != 0) & (b_field != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        arg = np.where(bending, 0.3 * b_field * np.abs(charge) * radius / (2 * pt), 0.0)
        reaches = (pt > 0) & (arg <= 1)
        half_turn = np.arcsin(np.clip(arg, 0, 1))
        # transverse path length: 2 R asin(r / 2R) = r * asin(arg) / arg  (-> r when straight)
        s = np.where(arg > 0, radius * half_turn / np.where(arg > 0, arg, 1), radius)
        z = s * pz / pt
    phi = phi0 - np.sign(charge) * np.where(bending, half_turn, 0.0)
    phi = (phi + np.pi) % (2 * np.pi) - np.pi
    eta = np.arcsinh(z / radius)
    nan = np.full_like(pt, np.nan)
    return np.where(reaches, eta, nan), np.where(reaches, phi, nan), np.where(reaches, z, nan), reaches


def track_mask(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, charge: np.ndarray, geometry: CaloGeometry
) -> np.ndarray:
    """Which particles become tracks: charged, ``pT > track_pt_min`` and ``|eta| < tracker_eta_max``."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.asarray(pz) / pt)
    return (np.asarray(charge) != 0) & (pt > geometry.track_pt_min) & (np.abs(eta) < geometry.tracker_eta_max)
