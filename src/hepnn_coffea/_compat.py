"""Small, documented work-arounds for the pinned dependency versions.

Applied once on import of :mod:`hepnn_coffea`, so dask workers that unpickle a
processor get them too.
"""

from __future__ import annotations


def patch_uproot_rntuple_title() -> None:
    """Give uproot's ``RField`` the ``title`` attribute coffea's dask reader asks for.

    ``coffea.nanoevents.NanoEventsFactory.from_root(mode="dask")`` passes
    ``ak_add_doc={"__doc__": "title", ...}``; uproot's RNTuple fields call it
    ``description``, so dask reads of RNTuples fail with
    ``AttributeError: 'RField' object has no attribute 'title'``.
    """
    try:
        from uproot.models.RNTuple import RField
    except ImportError:  # pragma: no cover - older uproot without RNTuple
        return
    if not hasattr(RField, "title"):
        RField.title = property(lambda self: self.description)


patch_uproot_rntuple_title()
