"""The rosette contract: what a valid candidate is, shared by whoever produces one and whoever verifies one.

`spec` is the JSON design spec, `compiler` turns a spec into its one deterministic SVG, and `svg_validator` is the
allowlist every SVG must pass. art_studio uses them to produce candidates; runs uses the same code to verify a
candidate at bind time (it recompiles the spec and requires the SVG to be byte-identical), and ai_gateway's
offline provider writes specs against the same model. Like the generated contracts, this package belongs to no
service and imports none: a change here changes producer and verifier together.
"""
