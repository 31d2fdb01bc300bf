"""A real stack with the console, populated by `custody demo`, and people to sign in as: what the console's HTTP
and browser tests run against.

After the demo, project `demo-*` holds a stale chain (the first candidates and their verdict, stale since the brief
was revised) and fresh candidates awaiting review. The operator generated and bound everything, so four eyes
refuses them their approval; `human:rita`, a reviewer added here, may approve.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from services.cli.state import StateLayout
from tests.support.processes import RunningStack, clean_environment, custody, running_stack

REVIEWER = "rita"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class ConsoleStack:
    stack: RunningStack
    demo: dict[str, object]
    operator_token: str
    reviewer_token: str

    @property
    def url(self) -> str:
        return self.stack.console_url

    @property
    def project(self) -> str:
        brief = str(self.demo["brief"])
        return brief.split("/")[1]

    def version(self, name: str) -> lineage_pb2.Version:
        """The version as lineage has it now (read with the operator's token, over gRPC, not through the console)."""
        with grpc.insecure_channel(self.stack.address("lineage")) as channel:
            result: lineage_pb2.Version = lineage_pb2_grpc.LineageServiceStub(channel).GetVersion(
                lineage_pb2.GetVersionRequest(name=name),
                metadata=(("authorization", f"Bearer {self.operator_token}"),),
                timeout=10,
            )
            return result

    def versions(self, artifact_type: str) -> list[lineage_pb2.Version]:
        with grpc.insecure_channel(self.stack.address("lineage")) as channel:
            response = lineage_pb2_grpc.LineageServiceStub(channel).ListVersions(
                lineage_pb2.ListVersionsRequest(parent=f"projects/{self.project}/artifacts/{artifact_type}"),
                metadata=(("authorization", f"Bearer {self.operator_token}"),),
                timeout=10,
            )
            return list(response.versions)

    def stale_candidate(self) -> str:
        """A candidate awaiting a decision whose brief was revised after it: its chain is stale."""
        return next(
            v.name
            for v in self.versions("svg_candidate")
            if v.health.health == lineage_pb2.HEALTH_STALE and v.status.status == lineage_pb2.STATUS_DRAFT
        )

    def approved_candidate(self) -> str:
        """A candidate the demo bound (ALLOW) and had approved."""
        return next(v.name for v in self.versions("svg_candidate") if v.status.status == lineage_pb2.STATUS_APPROVED)

    def fresh_candidates(self) -> list[str]:
        return [
            v.name
            for v in self.versions("svg_candidate")
            if v.health.health == lineage_pb2.HEALTH_VALID and v.status.status == lineage_pb2.STATUS_DRAFT
        ]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    @contextmanager
    def signed_in(self, token: str) -> Iterator[httpx.Client]:
        """An HTTP client signed in through the sign-in form, as a browser would."""
        with self.client() as client:
            sign_in(client, token)
            yield client


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/sign-in")
    match = CSRF.search(form.text)
    assert match, form.text
    response = client.post("/sign-in", data={"csrf": match.group(1), "token": token, "next": "/queue"})
    assert response.status_code == 303, response.text
    return response


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


@contextmanager
def console_stack(tmp_path: Path) -> Iterator[ConsoleStack]:
    with running_stack(tmp_path) as stack:
        state = ["--state-dir", str(stack.state_dir)]
        demo = custody("demo", *state, "--json", env=clean_environment(), timeout=180)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        added = custody("users", "add", REVIEWER, "--role", "reviewer", *state, env=clean_environment())
        assert added.returncode == 0, added.stderr
        yield ConsoleStack(
            stack,
            json.loads(demo.stdout),
            StateLayout(stack.state_dir).operator_token.read_text().strip(),
            added.stdout.strip(),
        )
