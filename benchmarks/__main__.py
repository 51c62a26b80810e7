"""Runs the main() of every benchmarks/bench_*.py module in turn.

python -m benchmarks            # all of them
python -m benchmarks codec      # only modules whose name contains "codec"
python -m benchmarks realkafka --version 4.2.2   # options from the first "-..." on go to main()
python -m benchmarks --help     # this text and the benchmarks' names

Modules whose main() takes no options are configured by environment variables (their
docstrings say which); options given to one of them are refused, not ignored.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Names first, then options ("-..." and whatever follows) for the chosen modules' main(argv).
    split = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    filters, options = args[:split], args[split:]
    names = sorted(p.stem for p in Path(__file__).resolve().parent.glob("bench_*.py"))
    if options in (["-h"], ["--help"]) and not filters:
        print(__doc__)
        print("benchmarks:", ", ".join(name.removeprefix("bench_") for name in names))
        return 0
    if filters:
        names = [name for name in names if any(f in name for f in filters)]
    if not names:
        print("no benchmark matches", filters, file=sys.stderr)
        return 1
    modules = [importlib.import_module(f"benchmarks.{name}") for name in names]
    if options:
        refusing = [m.__name__ for m in modules if not inspect.signature(m.main).parameters]
        if refusing:
            print(f"{', '.join(refusing)} take(s) no options (see the docstring): {options}", file=sys.stderr)
            return 2
    for module in modules:
        print(f"=== {module.__name__}", flush=True)
        if options:
            module.main(options)
        else:
            module.main()
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
