"""Lineage: versioned artifacts, required-lineage rules, staleness and approvals."""
