"""The lineage artifact types of the rosette flow, named once for the services that record and read them."""

from __future__ import annotations

# A design brief becomes SVG candidates (recorded by art_studio), each decided by a feasibility run (by runs).
DESIGN_BRIEF = "design_brief"
SVG_CANDIDATE = "svg_candidate"
FEASIBILITY_RUN = "feasibility_run"
