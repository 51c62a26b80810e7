"""The modules mypyc compiles (aioshare/_compiled.py), seen from the test suite: which are built,
whether a build is stale, and a way to import their sources instead (``import_sources``).

Read by path: importing ``aioshare._compiled`` would import the package, and with it the
modules themselves, before ``import_sources`` could step in.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MODULES: tuple[str, ...] = runpy.run_path(str(ROOT / "aioshare" / "_compiled.py"))["MODULES"]


def source_of(name: str) -> Path:
    return ROOT / (name.replace(".", "/") + ".py")


def builds_of(name: str) -> list[Path]:
    source = source_of(name)
    return sorted(source.parent.glob(source.stem + ".cpython-*.so"))


def stale_builds() -> list[str]:
    """Compiled modules older than their source: importing them would run the old code."""
    return [
        f"{build.relative_to(ROOT)} is older than {source_of(name).relative_to(ROOT)}"
        for name in MODULES
        for build in builds_of(name)
        if build.stat().st_mtime < source_of(name).stat().st_mtime
    ]


class _SourcesFirst(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_of(fullname))


def import_sources() -> None:
    """From now on the compiled modules import from their ``.py`` sources (the pure-Python
    package an install without a compiler gets); call before anything imports aioshare."""
    loaded = [name for name in MODULES if name in sys.modules]
    if loaded:
        raise RuntimeError(f"already imported: {loaded}")
    sys.meta_path.insert(0, _SourcesFirst())
