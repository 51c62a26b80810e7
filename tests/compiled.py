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
    """The module's compiled shim (it imports the code from the group library)."""
    source = source_of(name)
    return sorted(source.parent.glob(source.stem + ".cpython-*.so"))


def group_libraries() -> list[Path]:
    """The library holding every compiled module's code (setup.py's ``group_name``)."""
    return sorted(ROOT.glob("aioshare__mypyc.cpython-*.so"))


def stale_builds() -> list[str]:
    """Compiled modules older than their source: importing them would run the old code.

    The code is in the group library, rebuilt whenever a module changes (a module's shim is
    rewritten only when its own bytes change), so that is the build whose age counts."""
    shims = [build for name in MODULES for build in builds_of(name)]
    if not shims:
        return []
    libraries = group_libraries()
    if not libraries:
        return [f"{shims[0].relative_to(ROOT)} has no aioshare__mypyc library beside the package"]
    built = min(library.stat().st_mtime for library in libraries)
    return [
        f"{source_of(name).relative_to(ROOT)} changed after {libraries[0].name} was built"
        for name in MODULES
        if builds_of(name) and source_of(name).stat().st_mtime > built
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
