"""The `custody` operator command line: init, up, serve, health and the per-service command groups."""
