"""The services an outage harness runs: separate `custody serve` processes over one state directory, each on a
port fixed up front (so a killed service comes back where its peers expect it), with operator stubs to call them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from bench.faults.processes import ServiceProcess
from bench.harness import small_run
from custody.ai_gateway.v1 import gateway_pb2_grpc
from custody.art_studio.v1 import art_studio_pb2_grpc
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc

ORDER = ("ai_gateway", "lineage", "runs", "art_studio")
PEERS = {"runs": ("ai_gateway", "lineage"), "art_studio": ("ai_gateway", "runs", "lineage")}
MAX_MESSAGE = 8 * 1024 * 1024


class Stack:
    def __init__(
        self,
        root: Path,
        services: Iterable[str] = ORDER,
        settings: Mapping[str, Mapping[str, str]] | None = None,
        wrap: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.root = root
        self.state = root / "var"
        self.processes: dict[str, ServiceProcess] = {}
        for service in (s for s in ORDER if s in set(services)):
            self.processes[service] = ServiceProcess(
                service, self.state, dict((settings or {}).get(service, {})), (wrap or {}).get(service, ())
            )
        for service, process in self.processes.items():
            for peer in PEERS.get(service, ()):
                if peer in self.processes:
                    process.settings.setdefault(f"{peer}_address", self.processes[peer].address)
        self.auth = (("authorization", f"Bearer {self.any.layout.operator_token.read_text().strip()}"),)
        self._channels: dict[str, grpc.Channel] = {}

    @property
    def any(self) -> ServiceProcess:
        return next(iter(self.processes.values()))

    def start(self) -> Stack:
        """Starts every service side by side (each reaches its peers lazily), then waits for all."""
        for process in self.processes.values():
            process.launch()
        for process in self.processes.values():
            process.wait_ready()
        return self

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        for process in reversed(list(self.processes.values())):
            process.stop()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
            self._channels[service] = grpc.insecure_channel(self.processes[service].address, options=options)
        return self._channels[service]

    def runs(self) -> Any:
        return runs_pb2_grpc.RunsServiceStub(self.channel("runs"))

    def lineage(self) -> Any:
        return lineage_pb2_grpc.LineageServiceStub(self.channel("lineage"))

    def studio(self) -> Any:
        return art_studio_pb2_grpc.ArtStudioServiceStub(self.channel("art_studio"))

    def gateway(self) -> Any:
        return gateway_pb2_grpc.AiGatewayServiceStub(self.channel("ai_gateway"))

    def brief(self, project: str, entity: str = "brief") -> str:
        """A design brief in lineage, as the operator writes one; its version name."""
        data = struct_pb2.Struct()
        data.update({"prompt": "12 petals and a rope band"})
        request = lineage_pb2.CreateVersionRequest(
            parent=f"projects/{project}/artifacts/design_brief/{entity}",
            data=data,
            metadata=lineage_pb2.VersionMetadata(
                intent="a rosette", rationale="outage harness", confidence=1.0, source=lineage_pb2.SOURCE_HUMAN
            ),
        )
        return str(self.lineage().CreateVersion(request, metadata=self.auth, timeout=30).version.name)

    def runs_created_by(self, principal: str) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = self.runs().ListRuns(
                runs_pb2.ListRunsRequest(created_by=principal, page_size=100, page_token=token),
                metadata=self.auth,
                timeout=30,
            )
            names += [run.name for run in page.runs]
            token = page.next_page_token
            if not token:
                return names


def run_input(index: int) -> runs_pb2.RunInput:
    return small_run("outage", index)


def wait_until(done: Any, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Polls `done()` until it is true (True) or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True
