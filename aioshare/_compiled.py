"""The modules built as C extensions by mypyc (setup.py), and whether this install has them.

Every record delivered and acknowledged runs through these: compiled they cost about a third
less CPU (docs/performance.md).  They stay ordinary Python: an install without a compiler, or
built with ``AIOSHARE_PURE_PYTHON=1``, imports the same sources uncompiled.

No imports here: setup.py and the test suite read ``MODULES`` from this file by path, before
the package (whose ``__init__`` imports them) is imported.
"""

MODULES = (
    "aioshare.share.message",
    "aioshare.share.ack_tracker",
    "aioshare.share.leases",
    "aioshare.share.delivery",
    "aioshare.share.buffer",
    "aioshare.share.iterator",
    "aioshare.protocol.record_reader",
)


def compiled() -> dict[str, bool]:
    """Each module of ``MODULES``: True if it was imported from a compiled extension."""
    import importlib

    found = {}
    for name in MODULES:
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        found[name] = not origin.endswith(".py")
    return found
