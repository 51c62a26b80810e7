"""The compiled build (setup.py, aioshare/_compiled.py): built where it should be, and the same
behaviour as the pure-Python sources it comes from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aioshare._compiled import MODULES, compiled
from tests.compiled import ROOT, builds_of, group_libraries, stale_builds


def test_the_listed_modules_are_compiled() -> None:
    found = compiled()
    assert list(found) == list(MODULES)
    missing = [name for name, is_compiled in found.items() if not is_compiled]
    if missing and os.environ.get("AIOSHARE_PURE_PYTHON"):
        pytest.skip("AIOSHARE_PURE_PYTHON is set: the package was built without its compiled modules")
    if missing and not os.environ.get("CI"):
        pytest.skip(f"not compiled here ({missing}): `make compiled` needs a C compiler")
    assert not missing, f"imported from sources, not compiled: {missing}"


def test_no_build_is_older_than_its_source() -> None:
    assert stale_builds() == []
    if any(compiled().values()):
        assert all(builds_of(name) for name in MODULES) and group_libraries()


# The compiled modules' own tests, run again on their sources: an install without a compiler
# gets those, and a construct that behaves differently compiled (class attributes, aliases,
# NamedTuple annotations did) must fail one of the two runs.
_OWN_TESTS = [
    "tests/share/test_leases.py",
    "tests/share/test_acks.py",
    "tests/share/test_delivery.py",
    "tests/share/test_ack_results.py",
    "tests/share/test_ack_in_doubt.py",
    "tests/share/test_keep_alive.py",
    "tests/share/test_iterator.py",
    "tests/share/test_buffer.py",
    "tests/protocol/test_record_reader.py",
    "tests/protocol/test_records.py",
]


def test_the_sources_pass_the_compiled_modules_tests() -> None:
    tests = [path for path in _OWN_TESTS if (ROOT / path).exists()]
    assert tests == _OWN_TESTS, f"missing: {set(_OWN_TESTS) - set(tests)}"
    probe = (
        "import sys; from tests.compiled import import_sources; import_sources(); "
        "import pytest; from aioshare._compiled import compiled; "
        "assert not any(compiled().values()), compiled(); "
        "sys.exit(pytest.main(['-q', '-p', 'no:randomly', '-k', 'not kafka-4', *sys.argv[1:]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
