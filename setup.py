"""Build: the share consumer's per-record path compiled with mypyc (pyproject.toml has the rest).

The modules are listed in aioshare/_compiled.py.  They are ordinary, fully typed Python: mypyc
compiles them to C extensions that import in their place.  ``AIOSHARE_PURE_PYTHON=1`` builds
without them; so does a machine whose compiler fails (the extensions are optional): the
package then runs as plain Python, slower (docs/performance.md).
"""

from __future__ import annotations

import os
import runpy

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _extensions() -> list[object]:
    if os.environ.get("AIOSHARE_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    modules = runpy.run_path(os.path.join(HERE, "aioshare", "_compiled.py"))["MODULES"]
    paths = [name.replace(".", "/") + ".py" for name in modules]
    extensions = mypycify(paths, opt_level="3", group_name="aioshare")
    for extension in extensions:
        extension.optional = True  # no compiler: the pure-Python package still installs
    return list(extensions)


setup(ext_modules=_extensions())
