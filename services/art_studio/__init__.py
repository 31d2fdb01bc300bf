"""Art studio: prompt -> strict JSON spec (through the gateway) -> deterministic, validated SVG (stateless)."""
