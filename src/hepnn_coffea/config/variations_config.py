"""The ``variations:`` section: systematic variations evaluated in the same pass as the nominal.

::

    variations:
      seed: 1                         # with (variation, file, entry range): every chunk's random numbers
      constituents:                   # optional; detected from the model's branches when omitted
        kinematics: pxpypze           # pxpypze (part_px, part_py, part_pz, part_energy) | ptetaphim
        prefix: part_                 # every jagged <prefix>* branch loses the dropped constituents
        charge: part_charge           # charged = charge != 0 (default: <prefix>charge)
      report:                         # the shift table (``variations.json``/``.md``) and plot
        background_efficiencies: [0.01, 0.05]
        pt_edges: [550, 575, 600, 625, 650]    # default: background-pT quantiles
      define:
        charged_scale_up:   {type: scale, factor: 1.01, particles: charged}
        neutral_scale_down: {type: scale, factor: 0.99, particles: neutral}
        angular_smear:      {type: smear, sigma: 0.01}       # eta and phi, each Gaussian
        drop_5pct:          {type: drop, fraction: 0.05}     # every constituent with this probability
        pt_slope:           {type: weight, expression: "1 + 0.002 * (jet_pt - 600)"}
        qcd_only_up:        {type: scale, factor: 1.01, samples: [qcd]}

Constituent variations change the raw constituent branches before the data config's
expressions run (one model evaluation per variation); jet-level branches stay nominal. A
``weight`` variation multiplies the weights by ``expression`` (the data config's expression
language, over the model's branches and new variables) and reuses the nominal scores.
``samples`` restricts any variation to those samples (elsewhere it equals the nominal).
Nothing here executes code: expressions are parsed and allow-listed on load.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hepnn_coffea.config.data_config import ConfigError

__all__ = [
    "KINEMATICS",
    "NOMINAL",
    "PARTICLES",
    "TYPES",
    "ConstituentLayout",
    "ReportSettings",
    "Variation",
    "VariationsConfig",
    "detect_layout",
    "load_variations",
    "parse_variation_option",
]

NOMINAL = "nominal"
TYPES = ("scale", "smear", "drop", "weight")
PARTICLES = ("all", "charged", "neutral")
#: constituent four-momentum components per representation
KINEMATICS = {"pxpypze": ("px", "py", "pz", "energy"), "ptetaphim": ("pt", "eta", "phi", "mass")}
#: the parameter each type needs (besides the optional ``particles``/``samples``)
_PARAMETER = {"scale": "factor", "smear": "sigma", "drop": "fraction", "weight": "expression"}
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
#: (kinematics, prefix) tried in order when ``constituents`` is not given
_DETECT = (("pxpypze", "part_"), ("ptetaphim", "PFCand_"), ("ptetaphim", "part_"))


@dataclass(frozen=True)
class ConstituentLayout:
    """Names of the raw constituent branches a variation changes."""

    kinematics: str = "pxpypze"
    prefix: str = "part_"
    charge: str | None = None

    @property
    def momentum(self) -> tuple[str, ...]:
        """The four-momentum branches, e.g. ``(part_px, part_py, part_pz, part_energy)``."""
        return tuple(self.prefix + c for c in KINEMATICS[self.kinematics])

    @property
    def charge_branch(self) -> str:
        return self.charge or f"{self.prefix}charge"


@dataclass(frozen=True)
class ReportSettings:
    """Working points (background efficiencies, thresholds from the nominal) and pT bins of the table."""

    background_efficiencies: list[float] = field(default_factory=lambda: [0.01, 0.05])
    pt_edges: list[float] | None = None


@dataclass(frozen=True)
class Variation:
    """One variation (see the module docstring); exactly the parameter of its ``type`` is set."""

    name: str
    type: str
    factor: float | None = None
    sigma: float | None = None
    fraction: float | None = None
    expression: str | None = None
    particles: str = "all"
    samples: list[str] | None = None

    @property
    def is_weight(self) -> bool:
        return self.type == "weight"

    @property
    def needs_charge(self) -> bool:
        return self.particles != "all"

    def applies_to(self, sample: str) -> bool:
        """Whether entries of ``sample`` are varied (else they keep the nominal)."""
        return self.samples is None or str(sample) in self.samples


@dataclass(frozen=True)
class VariationsConfig:
    """The typed ``variations:`` section: seed, constituent branches, report settings, variations."""

    define: tuple[Variation, ...] = ()
    seed: int = 0
    constituents: ConstituentLayout | None = None
    report: ReportSettings = field(default_factory=ReportSettings)

    @property
    def names(self) -> list[str]:
        """``nominal`` first, then the variations in their order."""
        return [NOMINAL, *(v.name for v in self.define)]

    @property
    def needs_constituents(self) -> bool:
        return any(not v.is_weight for v in self.define)

    def layout(self, branches: Iterable[str]) -> ConstituentLayout:
        """The declared layout, else the first of ``part_px..``/``PFCand_pt..`` found in ``branches``."""
        return self.constituents or detect_layout(branches)

    def expressions(self) -> list[str]:
        return [v.expression for v in self.define if v.expression is not None]

    @classmethod
    def from_dict(cls, raw: Any, where: str = "variations") -> VariationsConfig:
        """Check keys, types and values; errors name ``where`` and the key (closest valid key suggested)."""
        from hepnn_coffea.config.training_config import _check_keys, _mapping, _typed_fields

        raw = dict(_mapping(raw, where))
        _check_keys(raw, ["define", "seed", "constituents", "report"], f"{where}.")
        define = _mapping(raw.pop("define", None), f"{where}.define")
        constituents = raw.pop("constituents", None)
        report = raw.pop("report", None)
        values = _typed_fields(_Top, raw, f"{where}.")
        layout = None
        if constituents is not None:
            label = f"{where}.constituents"
            layout = ConstituentLayout(
                **_typed_fields(ConstituentLayout, _mapping(constituents, label), f"{label}.")
            )
            if layout.kinematics not in KINEMATICS:
                raise ConfigError(
                    f"{where}.constituents.kinematics: {layout.kinematics!r} is not one of {list(KINEMATICS)}"
                )
        label = f"{where}.report"
        settings = ReportSettings(**_typed_fields(ReportSettings, _mapping(report, label), f"{label}."))
        _check_report(settings, f"{where}.report")
        variations = tuple(
            _variation(str(name), spec, f"{where}.define.{name}") for name, spec in define.items()
        )
        return cls(define=variations, constituents=layout, report=settings, **values)

    def to_dict(self) -> dict[str, Any]:
        """The section as plain data (what ``from_dict`` reads back)."""
        out: dict[str, Any] = {"seed": self.seed, "report": dataclasses.asdict(self.report), "define": {}}
        if self.constituents is not None:
            out["constituents"] = dataclasses.asdict(self.constituents)
        for v in self.define:
            spec = {k: val for k, val in dataclasses.asdict(v).items() if val is not None and k != "name"}
            out["define"][v.name] = spec
        return out


@dataclass(frozen=True)
class _Top:
    seed: int = 0


def detect_layout(branches: Iterable[str]) -> ConstituentLayout:
    """The constituent layout whose four-momentum branches are all in ``branches``."""
    names = set(branches)
    for kinematics, prefix in _DETECT:
        layout = ConstituentLayout(kinematics=kinematics, prefix=prefix)
        if set(layout.momentum) <= names:
            return layout
    tried = ", ".join(str(list(ConstituentLayout(k, p).momentum)) for k, p in _DETECT)
    raise ConfigError(
        f"variations: no constituent branches found among the model's branches (tried {tried}); "
        "declare variations.constituents: {kinematics, prefix, charge}"
    )


def _variation(name: str, spec: Any, where: str) -> Variation:
    from hepnn_coffea.config.training_config import _mapping, _typed_fields, suggest

    if not _NAME.match(name) or name == NOMINAL:
        raise ConfigError(
            f"{where}: a variation name is letters, digits and _.+- and not '{NOMINAL}', got {name!r}"
        )
    spec = dict(_mapping(spec, where))
    if isinstance(spec.get("samples"), str):
        spec["samples"] = [spec["samples"]]
    if isinstance(spec.get("expression"), (int, float)) and not isinstance(spec["expression"], bool):
        spec["expression"] = str(spec["expression"])  # a constant factor
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}.type: {kind!r} is not one of {list(TYPES)}{suggest(str(kind), TYPES)}")
    values = _typed_fields(Variation, {k: v for k, v in spec.items() if k != "name"}, f"{where}.")
    wanted = _PARAMETER[kind]
    for other in set(_PARAMETER.values()) - {wanted}:
        if values.get(other) is not None:
            raise ConfigError(
                f"{where}.{other}: not a parameter of a '{kind}' variation (it takes '{wanted}')"
            )
    if values.get(wanted) is None:
        raise ConfigError(f"{where}.{wanted}: missing (a '{kind}' variation needs it)")
    if values.get("samples") is not None:
        values["samples"] = [str(s) for s in values["samples"]]
    variation = Variation(name=name, **values)
    if variation.particles not in PARTICLES:
        raise ConfigError(
            f"{where}.particles: {variation.particles!r} is not one of {list(PARTICLES)}"
            f"{suggest(variation.particles, PARTICLES)}"
        )
    if kind == "weight" and variation.particles != "all":
        raise ConfigError(f"{where}.particles: a weight variation changes jets, not constituents")
    _check_value(variation, where)
    return variation


def _check_value(v: Variation, where: str) -> None:
    if v.type == "scale" and not v.factor > 0:
        raise ConfigError(f"{where}.factor: must be > 0, got {v.factor}")
    if v.type == "smear" and not v.sigma >= 0:
        raise ConfigError(f"{where}.sigma: must be >= 0, got {v.sigma}")
    if v.type == "drop" and not 0 <= v.fraction < 1:
        raise ConfigError(f"{where}.fraction: must be in [0, 1), got {v.fraction}")
    if v.type == "weight":
        from hepnn_coffea.features.expressions import Expression, ExpressionError

        try:
            Expression(v.expression)  # parsed and allow-listed; nothing runs
        except ExpressionError as err:
            raise ConfigError(f"{where}.expression: {err}") from None


def _check_report(settings: ReportSettings, where: str) -> None:
    for e in settings.background_efficiencies:
        if not 0 < e < 1:
            raise ConfigError(f"{where}.background_efficiencies: {e} is not in (0, 1)")
    if not settings.background_efficiencies:
        raise ConfigError(f"{where}.background_efficiencies: give at least one")
    edges = settings.pt_edges
    if edges is not None:
        if len(edges) < 2 or any(not isinstance(e, (int, float)) or isinstance(e, bool) for e in edges):
            raise ConfigError(f"{where}.pt_edges: expected at least two numbers, got {edges!r}")
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"{where}.pt_edges: must increase, got {edges}")


def load_variations(source: str | pathlib.Path | Mapping[str, Any]) -> VariationsConfig:
    """A YAML file (or mapping) with a top-level ``variations:`` section, or the section itself."""
    import yaml

    where = "variations"
    if isinstance(source, (str, pathlib.Path)):
        path = pathlib.Path(source)
        raw = yaml.safe_load(path.read_text())
        where = f"{path}: variations"
    else:
        raw = source
    if isinstance(raw, Mapping) and set(raw) == {"variations"}:
        raw = raw["variations"]
    return VariationsConfig.from_dict(raw, where)


def parse_variation_option(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:TYPE[:key=value,...]`` (command line) -> ``(name, spec)``; list values separated by ``|``.

    Example: ``charged_up:scale:factor=1.01,particles=charged`` or
    ``qcd_w:weight:expression=1.1,samples=qcd``.
    """
    import yaml

    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"--variation {text!r}: expected NAME:TYPE[:key=value,...]")
    spec: dict[str, Any] = {"type": parts[1]}
    for pair in parts[2].split(",") if len(parts) == 3 and parts[2] else []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--variation {text!r}: {pair!r} is not key=value")
        key = key.strip()
        spec[key] = (
            value.split("|") if key == "samples" else value if key == "expression" else yaml.safe_load(value)
        )
    return parts[0], spec


def variations_from_options(
    path: str | None, options: Iterable[str] = (), seed: int | None = None
) -> VariationsConfig | None:
    """The command line's variations: ``--variations FILE``, ``--variation NAME:TYPE:...``,
    ``--variation-seed``."""
    import yaml

    options = list(options)
    if path is None and not options:
        return None
    raw: dict[str, Any] = {}
    if path is not None:
        raw = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        if isinstance(raw, Mapping) and set(raw) == {"variations"}:
            raw = raw["variations"]
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: expected a mapping with a 'variations:' section")
        raw = dict(raw)
    define = dict(raw.get("define") or {})
    for text in options:
        name, spec = parse_variation_option(text)
        if name in define:
            raise ConfigError(f"--variation {text!r}: variation '{name}' is already defined")
        define[name] = spec
    raw["define"] = define
    if seed is not None:
        raw["seed"] = seed
    return VariationsConfig.from_dict(raw, f"{path}: variations" if path else "--variation")
