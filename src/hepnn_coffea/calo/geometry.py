"""Geometry and resolution constants of the simplified calorimeter, in one frozen dataclass.

Every number the calorimeter view uses lives in :class:`CaloGeometry`; the defaults
describe a CMS-like barrel (3.8 T solenoid, a fine EM layer at 1.5 m, a coarse
hadronic layer at 2.0 m). ``models/data/calo_geometry.yaml`` holds the same
defaults with comments; :func:`load_geometry` reads such a file (unknown keys
are rejected with an error naming them).

Units: GeV, metres, tesla; cell sizes and shower widths in (eta, phi) units.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

import yaml

#: layer numbers used in the ``cell_layer`` branch
EM_LAYER, HAD_LAYER = 0, 1
#: particle types (``part_type`` branch), from the PDG id and charge
PHOTON, ELECTRON, MUON, CHARGED_HADRON, NEUTRAL_HADRON, INVISIBLE = range(6)
PARTICLE_TYPES = ("photon", "electron", "muon", "charged_hadron", "neutral_hadron", "invisible")
#: the particle types a clustering model classifies (the visible ones; torch-free home of
#: ``hepnn_coffea.calo.clustering_model.PID_CLASSES``, used by the evaluation without torch)
PID_CLASSES = PARTICLE_TYPES[:5]


class GeometryError(ValueError):
    """A geometry file or value is invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class CaloGeometry:
    """All constants of the simplified detector (see the module docstring for units).

    Attributes
    ----------
    b_field
        Solenoid field along +z [T]; charged particles follow a helix up to the EM surface.
    track_pt_min
        Charged particles above this pT [GeV] (and within ``tracker_eta_max``) become tracks.
    tracker_eta_max
        Tracker acceptance in ``|eta|``.
    eta_max
        Calorimeter acceptance: particles whose impact ``|eta|`` exceeds it deposit nothing.
    em_radius, had_radius
        Radii of the EM and hadronic cylinders [m]; cell (x, y, z) lie on them.
    em_cell_eta, em_cell_phi, had_cell_eta, had_cell_phi
        Nominal cell sizes. Eta cells are exactly this size (edges at multiples of it);
        the phi size is adjusted to ``2 pi / round(2 pi / size)`` so the cells tile the circle
        (0.02503 for 0.025, 0.09973 for 0.1).
    em_window, had_window
        Odd number of cells per side of the square neighbourhood a shower is spread over (5 -> 5x5).
    em_shower_width, had_shower_width
        Gaussian sigma of the lateral profile in each layer, in (eta, phi) units.
    egamma_em_fraction
        Fraction of a photon's or electron's energy deposited in the EM layer (rest in HAD).
    hadron_em_fraction_mean, hadron_em_fraction_sigma
        Per-hadron EM fraction drawn from a normal distribution with these parameters,
        clipped to [0, 1] (fluctuating EM/HAD split of hadronic showers).
    muon_em_deposit, muon_had_deposit
        MIP-like energy a muon leaves in each layer [GeV] (capped by its energy); the rest escapes.
    em_sampling, em_constant, had_sampling, had_constant
        Energy resolution per layer: ``sigma(E) / E = sampling / sqrt(E) (+) constant``.
    em_noise, had_noise
        Gaussian electronics noise per cell [GeV].
    noise_threshold
        Cells whose measured energy is below ``noise_threshold * noise`` of their layer are dropped.
    """

    b_field: float = 3.8
    track_pt_min: float = 0.5
    tracker_eta_max: float = 2.5
    eta_max: float = 3.0
    em_radius: float = 1.5
    had_radius: float = 2.0
    em_cell_eta: float = 0.025
    em_cell_phi: float = 0.025
    had_cell_eta: float = 0.1
    had_cell_phi: float = 0.1
    em_window: int = 5
    had_window: int = 5
    em_shower_width: float = 0.015
    had_shower_width: float = 0.06
    egamma_em_fraction: float = 0.98
    hadron_em_fraction_mean: float = 0.3
    hadron_em_fraction_sigma: float = 0.2
    muon_em_deposit: float = 0.3
    muon_had_deposit: float = 1.5
    em_sampling: float = 0.10
    em_constant: float = 0.01
    had_sampling: float = 0.50
    had_constant: float = 0.03
    em_noise: float = 0.03
    had_noise: float = 0.15
    noise_threshold: float = 2.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = int if field.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GeometryError(f"geometry key '{field.name}': expected a number, got {value!r}")
            if kind is int and int(value) != value:
                raise GeometryError(f"geometry key '{field.name}': expected an integer, got {value!r}")
            object.__setattr__(self, field.name, kind(value))
            if value < 0 or (value == 0 and field.name not in _MAY_BE_ZERO):
                raise GeometryError(f"geometry key '{field.name}': must be positive, got {value!r}")
        for name in ("em_window", "had_window"):
            if getattr(self, name) % 2 != 1:
                raise GeometryError(f"geometry key '{name}': must be odd, got {getattr(self, name)}")
        for name in ("egamma_em_fraction", "hadron_em_fraction_mean"):
            if getattr(self, name) > 1:
                raise GeometryError(f"geometry key '{name}': must be in [0, 1], got {getattr(self, name)}")
        if self.had_radius <= self.em_radius:
            raise GeometryError("geometry key 'had_radius': must be larger than 'em_radius'")

    # -- per-layer views ------------------------------------------------------------------
    def radius(self, layer: int) -> float:
        """Radius of ``layer`` (:data:`EM_LAYER` or :data:`HAD_LAYER`) [m]."""
        return self.em_radius if layer == EM_LAYER else self.had_radius

    def cell_eta(self, layer: int) -> float:
        """Eta size of the cells of ``layer``."""
        return self.em_cell_eta if layer == EM_LAYER else self.had_cell_eta

    def n_phi(self, layer: int) -> int:
        """Number of phi cells of ``layer`` (the circle is tiled exactly)."""
        return max(1, round(2 * math.pi / (self.em_cell_phi if layer == EM_LAYER else self.had_cell_phi)))

    def cell_phi(self, layer: int) -> float:
        """Actual phi size of the cells of ``layer``: ``2 pi / n_phi``."""
        return 2 * math.pi / self.n_phi(layer)

    def window(self, layer: int) -> int:
        return self.em_window if layer == EM_LAYER else self.had_window

    def shower_width(self, layer: int) -> float:
        return self.em_shower_width if layer == EM_LAYER else self.had_shower_width

    def resolution(self, layer: int) -> tuple[float, float]:
        """(sampling, constant) terms of ``layer``."""
        if layer == EM_LAYER:
            return self.em_sampling, self.em_constant
        return self.had_sampling, self.had_constant

    def noise(self, layer: int) -> float:
        return self.em_noise if layer == EM_LAYER else self.had_noise

    @property
    def curl_pt(self) -> float:
        """pT [GeV] below which a unit-charge particle curls before the EM radius: ``0.3 B R / 2``."""
        return 0.3 * self.b_field * self.em_radius / 2

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "geometry") -> CaloGeometry:
        """Build from a mapping; unknown keys raise :class:`GeometryError` naming them."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise GeometryError(f"{where}: expected a mapping of geometry keys, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GeometryError(
                f"{where}: unknown geometry key '{unknown[0]}'"
                + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
                + f"; known keys: {sorted(known)}"
            )
        try:
            return cls(**values)
        except GeometryError as err:
            raise GeometryError(f"{where}: {err}") from None

    def to_yaml(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


_MAY_BE_ZERO = {
    "b_field",
    "track_pt_min",
    "em_constant",
    "had_constant",
    "em_noise",
    "had_noise",
    "noise_threshold",
    "egamma_em_fraction",
    "hadron_em_fraction_mean",
    "hadron_em_fraction_sigma",
    "muon_em_deposit",
    "muon_had_deposit",
    "em_sampling",
    "had_sampling",
}


def load_geometry(source: str | pathlib.Path | dict[str, Any] | CaloGeometry | None = None) -> CaloGeometry:
    """A :class:`CaloGeometry` from a YAML file, a mapping, an instance, or ``None`` (the defaults)."""
    if source is None:
        return CaloGeometry()
    if isinstance(source, CaloGeometry):
        return source
    if isinstance(source, dict):
        return CaloGeometry.from_dict(source)
    path = pathlib.Path(source)
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise GeometryError(f"{path}: cannot read geometry YAML: {err}") from err
    return CaloGeometry.from_dict(values, where=str(path))
