"""What the runs domain needs from other services, as protocols: an explainer (ai_gateway) and candidate
versions (lineage). The adapters are explainer.py and lineage_candidates.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ExplainerAnswer:
    content: str
    call: str
    engine_id: str
    engine_version: str


class Explainer(Protocol):
    """Asks an AI (through ai_gateway) to explain a decision."""

    async def explain(self, prompt: str) -> ExplainerAnswer: ...


@dataclass(frozen=True)
class CandidateRecord:
    """What lineage recorded about a candidate: the digests of the SVG and spec it stands for."""

    name: str
    svg_sha256: str
    spec_sha256: str

    def to_document(self) -> dict[str, str]:
        return {"name": self.name, "svg_sha256": self.svg_sha256, "spec_sha256": self.spec_sha256}


class Candidates(Protocol):
    """Reads candidate versions from lineage."""

    async def read(self, name: str) -> CandidateRecord: ...
