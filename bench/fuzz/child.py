"""One fuzz target under atheris, in a process of its own (atheris ends the process when fuzzing stops):

    python -m bench.fuzz.child TARGET [libFuzzer flags...] CORPUS_DIR

The modules a target exercises (registry.INSTRUMENTED) are imported under atheris's instrumentation, so libFuzzer
sees their branch coverage; C extensions (protobuf's upb, pydantic-core, expat) run but are not instrumented.
"""

from __future__ import annotations

import importlib
import sys

import atheris


def main() -> None:
    name, flags = sys.argv[1], sys.argv[2:]
    from bench.fuzz.registry import REDECODED, UNINSTRUMENTED, instrumented, target

    for module in UNINSTRUMENTED.get(name, ()):
        importlib.import_module(module)
    with atheris.instrument_imports(include=list(instrumented(name))):
        for module in REDECODED:
            if module in sys.modules:  # imported above without instrumentation: again, with it
                importlib.reload(sys.modules[module])
        run = target(name)
        run(b"")  # imports whatever the target imports lazily, under instrumentation too
    atheris.Setup([sys.argv[0], *flags], run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
