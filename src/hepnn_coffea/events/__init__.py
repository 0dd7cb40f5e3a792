"""Event-level NanoAOD helpers: NanoEvents from flat branches, fat-jet generator matching, event splits.

Names are imported on first use.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "to_nanoevents": "hepnn_coffea.events.nanoevents:to_nanoevents",
    "match_fatjets": "hepnn_coffea.events.genmatch:match_fatjets",
    "MatchReason": "hepnn_coffea.events.genmatch:MatchReason",
    "delta_r": "hepnn_coffea.events.genmatch:delta_r",
    "event_split": "hepnn_coffea.events.split:event_split",
    "jet_rows": "hepnn_coffea.events.table:jet_rows",
    "add_truth": "hepnn_coffea.events.table:add_truth",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
