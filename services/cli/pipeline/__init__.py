"""The recipe driver: YAML recipes of module stages, run in dependency order, every output saved as a
lineage version through the lineage service (the driver is an operator client, like the CLI it runs under)."""
