"""One fuzz target under atheris, in a process of its own (atheris ends the process when fuzzing stops):

    python -m bench.fuzz.child TARGET [libFuzzer flags...] CORPUS_DIR

Custody's modules and the parsers they lean on are imported under atheris's instrumentation, so libFuzzer sees
their branch coverage; the C extensions (protobuf's upb, pydantic-core, expat) are exercised but not instrumented.
"""

from __future__ import annotations

import sys

import atheris

INSTRUMENTED = ("services", "bench.fuzz", "tinycss2", "defusedxml", "rfc8785", "jsonschema")


def main() -> None:
    name, flags = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from bench.fuzz.registry import target

        run = target(name)
        run(b"")  # imports whatever the target imports lazily, under instrumentation too
    atheris.Setup([sys.argv[0], *flags], run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
