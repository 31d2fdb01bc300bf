"""Settings of the lineage service (`CUSTODY_LINEAGE_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.common.config import Port, StatefulServiceSettings

SHIPPED_POLICIES = Path(__file__).resolve().parent / "policies"


class LineageSettings(StatefulServiceSettings):
    service: ClassVar[str] = "lineage"

    port: Port = 50054
    policies_dir: Path = Field(
        default=SHIPPED_POLICIES, description="directory of policy YAML files, all loaded and validated at start"
    )
    # Witnessing: the verifier keys (`<service>.ledger.vkey`, written by `custody init`) of the authorities that
    # hand lineage their checkpoints (runs), so it can check each one before keeping it.
    ledger_peer_keys_dir: Path | None = Field(default=None, description="default: <state_dir>/keys")

    @property
    def resolved_ledger_peer_keys_dir(self) -> Path:
        return self.ledger_peer_keys_dir or self.state_dir / "keys"
