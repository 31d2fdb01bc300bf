"""Coverage-guided fuzzing (atheris/libFuzzer) of the code that reads what callers and old stores send: the SVG
validator, the rosette spec parser and compiler, the canonical JSON hasher, the legacy run reader and every
servicer's request decoding.

    python -m bench.fuzz --seconds 60                 # every target, 60 s each (make bench runs this)
    python -m bench.fuzz --seconds 2 --target svg_validator
    python -m bench.fuzz --replay spec_compiler BASE64_OR_FILE

Each target (targets.py, requests.py) is a plain function of bytes that returns for an accepted input or an
expected refusal and raises for anything else: that is a crash. Each runs in its own child process (child.py;
atheris ends its process when fuzzing stops), seeded from real valid inputs (seeds.py); the runner parses
libFuzzer's final statistics and writes bench/results/fuzz-<stamp>.json.
"""
