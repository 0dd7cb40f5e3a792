"""Event-level NanoAOD helpers: NanoEvents from flat branches, fat-jet generator matching, event splits."""

__all__ = []
