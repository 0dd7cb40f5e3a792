"""Energy deposits of particles in the two calorimeter layers, aggregated into cells.

Shower model (flat NumPy arrays over all particles of a chunk, no loop over jets or particles):

1. **Split** (:func:`layer_energies`): the expected energy per layer is ``f E`` (EM) and
   ``(1 - f) E`` (HAD), with ``f = egamma_em_fraction`` for photons and electrons and ``f`` drawn
   per hadron from ``N(hadron_em_fraction_mean, hadron_em_fraction_sigma)`` clipped to [0, 1];
   muons leave fixed MIP-like deposits (capped by their energy); invisible particles, loopers
   and particles outside ``|eta| < eta_max`` deposit nothing.
2. **Sampling fluctuations**: each layer's deposit is ``max(0, E_l + sigma_l(E_l) N(0, 1))`` with
   ``sigma_l(E) = sqrt(a_l^2 E + c_l^2 E^2)`` (``a`` sampling, ``c`` constant term).
3. **Lateral profile** (:func:`lateral_spread`): the deposit of each layer is spread over a
   ``window x window`` neighbourhood of cells around the impact cell with a 2D Gaussian of
   width ``shower_width`` integrated over each cell (differences of the normal CDF in eta and
   in phi), normalised over the window so the whole deposit lands in cells.
4. **Cells** (:func:`aggregate_cells`): contributions are summed per (jet, layer, ieta, iphi)
   with ``np.unique`` + ``np.bincount``; each cell gets Gaussian noise (``em_noise``/``had_noise``)
   and is kept if its measured energy exceeds ``noise_threshold`` noise sigmas. The truth
   energy of dropped cells is booked per particle (``below_threshold``), so for every particle
   ``sum(kept contributions) + below_threshold == deposited`` and for every cell
   ``E - noise == sum(contributions)``. Noise is only simulated on cells that received a
   deposit (no noise-only cells).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import ndtr

from hepnn_coffea.calo.geometry import (
    CHARGED_HADRON,
    ELECTRON,
    EM_LAYER,
    HAD_LAYER,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    CaloGeometry,
)

LAYERS = (EM_LAYER, HAD_LAYER)


def layer_energies(
    types: np.ndarray,
    energy: np.ndarray,
    active: np.ndarray,
    geometry: CaloGeometry,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected and fluctuated deposits per particle and layer, both ``(n_particles, 2)``.

    ``active`` marks particles that reach the calorimeter inside its acceptance. The random
    draws (one EM fraction and two resolution normals per particle) are made for every
    particle, so the stream does not depend on which particles are active.
    """
    energy = np.asarray(energy, dtype=np.float64)
    n = len(energy)
    frac_draw = rng.normal(geometry.hadron_em_fraction_mean, geometry.hadron_em_fraction_sigma, size=n)
    resolution_draw = rng.standard_normal(size=(n, 2))
    frac = np.where(np.isin(types, (PHOTON, ELECTRON)), geometry.egamma_em_fraction, np.clip(frac_draw, 0, 1))
    expected = np.stack([frac * energy, (1 - frac) * energy], axis=1)
    is_hadron_or_eg = np.isin(types, (PHOTON, ELECTRON, CHARGED_HADRON, NEUTRAL_HADRON))
    expected[~is_hadron_or_eg] = 0.0
    muon = types == MUON
    mu_em = np.minimum(energy, geometry.muon_em_deposit)
    mu_had = np.minimum(energy - mu_em, geometry.muon_had_deposit)
    expected[muon] = np.stack([mu_em, mu_had], axis=1)[muon]
    expected[~np.asarray(active, dtype=bool)] = 0.0
    sigma = np.empty_like(expected)
    for layer in LAYERS:
        a, c = geometry.resolution(layer)
        sigma[:, layer] = np.sqrt(a * a * expected[:, layer] + (c * expected[:, layer]) ** 2)
    deposited = np.maximum(expected + sigma * resolution_draw, 0.0)
    return expected, deposited


def lateral_spread(
    eta: np.ndarray, phi: np.ndarray, layer: int, geometry: CaloGeometry
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells of the ``window x window`` neighbourhood of each impact point and their weights.

    Returns
    -------
    ieta, iphi, weight
        ``(n_particles, window**2)`` arrays: eta index (cell ``i`` spans ``[i, i+1) * cell_eta``),
        phi index in ``[0, n_phi)`` (cell ``j`` spans ``-pi + [j, j+1) * cell_phi``) and the
        fraction of the deposit in the cell (rows sum to 1).
    """
    deta, dphi, n_phi = geometry.cell_eta(layer), geometry.cell_phi(layer), geometry.n_phi(layer)
    half = geometry.window(layer) // 2
    sigma = geometry.shower_width(layer)
    offsets = np.arange(-half, half + 1)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    ieta0 = np.floor(eta / deta).astype(np.int64)
    iphi0 = np.minimum(np.floor((phi + math.pi) / dphi).astype(np.int64), n_phi - 1)
    ieta = ieta0[:, None] + offsets  # (P, W)
    iphi_unwrapped = iphi0[:, None] + offsets
    w_eta = _cell_integral(ieta * deta, (ieta + 1) * deta, eta[:, None], sigma)
    lo_phi = -math.pi + iphi_unwrapped * dphi
    w_phi = _cell_integral(lo_phi, lo_phi + dphi, phi[:, None], sigma)
    weight = w_eta[:, :, None] * w_phi[:, None, :]
    total = weight.sum(axis=(1, 2), keepdims=True)
    weight = weight / np.where(total > 0, total, 1.0)
    width = len(offsets)
    ieta_2d = np.broadcast_to(ieta[:, :, None], (len(eta), width, width))
    iphi_2d = np.broadcast_to((iphi_unwrapped % n_phi)[:, None, :], (len(eta), width, width))
    shape = (len(eta), width * width)
    return ieta_2d.reshape(shape), iphi_2d.reshape(shape), weight.reshape(shape)


def _cell_integral(lo: np.ndarray, hi: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction of a 1D Gaussian (``centre``, ``sigma``) inside ``[lo, hi)``."""
    return ndtr((hi - centre) / sigma) - ndtr((lo - centre) / sigma)


@dataclasses.dataclass
class CellDeposits:
    """Cells and contributions of a chunk (flat arrays, grouped by jet, with per-jet counts).

    Cell arrays (``n_cells``): ``jet``, ``layer``, ``ieta``, ``iphi``, ``energy`` (measured),
    ``noise``, ``main_particle`` (chunk-global index of the largest contributor).
    Contribution arrays (``n_contribs``, sorted by cell then particle): ``contrib_cell``
    (chunk-global kept-cell index), ``contrib_particle`` (chunk-global particle index),
    ``contrib_energy``. Per particle (``n_particles``): ``below_threshold``.
    """

    jet: np.ndarray
    layer: np.ndarray
    ieta: np.ndarray
    iphi: np.ndarray
    energy: np.ndarray
    noise: np.ndarray
    main_particle: np.ndarray
    contrib_cell: np.ndarray
    contrib_particle: np.ndarray
    contrib_energy: np.ndarray
    below_threshold: np.ndarray
    cells_per_jet: np.ndarray
    contribs_per_jet: np.ndarray


def aggregate_cells(
    jet: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    deposited: np.ndarray,
    n_jets: int,
    geometry: CaloGeometry,
    rng: np.random.Generator,
) -> CellDeposits:
    """Spread each particle's per-layer deposit over cells, sum per cell, add noise, apply threshold.

    Parameters
    ----------
    jet
        Jet index (in the chunk) of each particle; particles must be grouped by jet.
    eta, phi
        Shower axis of each particle (its impact point on the EM surface); ignored where
        ``deposited`` is zero (NaN allowed there).
    deposited
        ``(n_particles, 2)`` fluctuated deposit per layer (from :func:`layer_energies`).
    """
    n_part = len(jet)
    jet = np.asarray(jet, dtype=np.int64)
    # one int64 key per (jet, layer, ieta, iphi), ordered by jet first; contributions are generated
    # particle-major within a layer, so a stable sort by key orders them by cell, then particle
    n_phi = max(geometry.n_phi(layer) for layer in LAYERS)
    eta_offset = int(math.ceil(geometry.eta_max / min(geometry.em_cell_eta, geometry.had_cell_eta))) + 64
    keys, parts, energies = [], [], []
    for layer in LAYERS:  # two layers, not a loop over data
        idx = np.flatnonzero(deposited[:, layer] > 0)
        ieta, iphi, weight = lateral_spread(eta[idx], phi[idx], layer, geometry)
        key = ((jet[idx] * 2 + layer)[:, None] * (2 * eta_offset) + (ieta + eta_offset)) * n_phi + iphi
        e = weight * deposited[idx, layer][:, None]
        part = np.broadcast_to(idx[:, None], e.shape)
        nonzero = e > 0  # all True unless a weight underflows (very narrow showers)
        keys.append(key[nonzero])
        parts.append(part[nonzero])
        energies.append(e[nonzero])
    key, c_part, c_e = np.concatenate(keys), np.concatenate(parts), np.concatenate(energies)
    order = np.argsort(key, kind="stable")
    key, c_part, c_e = key[order], c_part[order], c_e[order]
    new_cell = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(new_cell)
    cell_of = np.cumsum(new_cell) - 1  # cell index of each contribution
    cell_key = key[starts]
    n_cells = len(cell_key)
    truth = np.add.reduceat(c_e, starts) if n_cells else np.zeros(0)
    cell_iphi = cell_key % n_phi
    rest = cell_key // n_phi
    cell_ieta = rest % (2 * eta_offset) - eta_offset
    rest = rest // (2 * eta_offset)
    cell_layer, cell_jet = rest % 2, rest // 2
    sigma = np.where(cell_layer == EM_LAYER, geometry.em_noise, geometry.had_noise)
    noise = rng.standard_normal(n_cells) * sigma
    measured = truth + noise
    kept = measured > geometry.noise_threshold * sigma
    kept_c = kept[cell_of]
    below = np.bincount(c_part[~kept_c], weights=c_e[~kept_c], minlength=n_part)
    # main particle of a cell: the first contribution reaching the cell's maximum
    if n_cells:
        position = np.arange(len(c_e))
        is_max = c_e == np.maximum.reduceat(c_e, starts)[cell_of]
        main_particle = c_part[np.minimum.reduceat(np.where(is_max, position, len(c_e)), starts)][kept]
    else:
        main_particle = np.zeros(0, dtype=np.int64)
    new_index = np.cumsum(kept) - 1
    k_cell, k_part, k_e = new_index[cell_of[kept_c]], c_part[kept_c], c_e[kept_c]
    return CellDeposits(
        jet=cell_jet[kept],
        layer=cell_layer[kept],
        ieta=cell_ieta[kept],
        iphi=cell_iphi[kept],
        energy=measured[kept],
        noise=noise[kept],
        main_particle=main_particle,
        contrib_cell=k_cell,
        contrib_particle=k_part,
        contrib_energy=k_e,
        below_threshold=below,
        cells_per_jet=np.bincount(cell_jet[kept], minlength=n_jets),
        contribs_per_jet=np.bincount(jet[k_part], minlength=n_jets),
    )


def cell_positions(
    layer: np.ndarray, ieta: np.ndarray, iphi: np.ndarray, geometry: CaloGeometry
) -> tuple[np.ndarray, ...]:
    """Centre (eta, phi, x, y, z) of cells on their layer's cylinder."""
    em = np.asarray(layer) == EM_LAYER
    deta = np.where(em, geometry.cell_eta(EM_LAYER), geometry.cell_eta(HAD_LAYER))
    dphi = np.where(em, geometry.cell_phi(EM_LAYER), geometry.cell_phi(HAD_LAYER))
    radius = np.where(em, geometry.em_radius, geometry.had_radius)
    eta = (ieta + 0.5) * deta
    phi = -math.pi + (iphi + 0.5) * dphi
    return eta, phi, radius * np.cos(phi), radius * np.sin(phi), radius * np.sinh(eta)
