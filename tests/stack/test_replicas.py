"""Two replicas of every service (`custody serve`, real processes) on one PostgreSQL database per stateful service,
runs' blobs in a real S3 server (SeaweedFS), and every client round-robin over both replicas of its callee: the
operator's (`custody demo --<service>-address A,B`, and the endpoints file for the other commands) and the
services' own (`<PEER>_ADDRESS: A,B`). The demo passes; each replica served calls of every caller (request logs);
`custody runs verify --all` and `custody ledger audit` pass for each authority, whose two replicas appended to one
ledger and signed into one checkpoint log; runs' outbox delivered each run to lineage exactly once.

Then one replica of each service is killed (SIGKILL, as a node fails) in the middle of a second demo, between two
of its steps: the clients fail over to the survivors and the demo completes, and everything verifies again.
A call in flight at the dead replica when it died is not retried unless it is idempotent (README "Scale-out")."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from services.cli.demo import Demo, DemoReport, add_demo_reviewer
from services.cli.state import StateLayout, save_endpoints
from services.common.catalog import SERVICE_NAMES, SERVICES
from services.common.clients import ServiceClients
from services.common.config import env_prefix
from services.common.content_credentials.layout import anchors_file
from services.common.contracts import messages
from services.common.db import create_engine
from tests.support.harness import operator_token, state_layout
from tests.support.processes import ServedProcess, clean_environment, custody, free_port, serving
from tests.support.seaweedfs import SeaweedFS, seaweedfs

pytestmark = pytest.mark.stack

REPLICAS = 2
AUTHORITIES = [name for name in SERVICE_NAMES if SERVICES[name].stateful]
KILLED_AFTER = "bind first candidate (ALLOW)"  # the demo's step after which one replica of each service dies


@dataclass
class Replicated:
    layout: StateLayout
    replicas: dict[str, list[ServedProcess]]
    databases: dict[str, str]
    s3: SeaweedFS
    logs: dict[str, list[Path]]

    def addresses(self, service: str) -> str:
        return ",".join(replica.address for replica in self.replicas[service])

    def cli_environment(self) -> dict[str, str]:
        """What an operator's shell holds for the offline commands (`custody ledger audit` reads the databases and
        the blobs itself): each authority's database and runs' bucket."""
        env = {env_prefix(name) + "DATABASE_URL": url for name, url in self.databases.items()}
        env.update({env_prefix("runs") + key.upper(): value for key, value in self.s3.runs_settings().items()})
        return clean_environment(**env)


@pytest.fixture
def replicated(tmp_path: Path, postgres_urls: Callable[[], str]) -> Iterator[Replicated]:
    layout = state_layout(tmp_path / "var")
    databases = {name: postgres_urls() for name in AUTHORITIES}
    ports = {name: [free_port() for _ in range(REPLICAS)] for name in SERVICE_NAMES}
    peers = {name: ",".join(f"127.0.0.1:{port}" for port in ports[name]) for name in SERVICE_NAMES}
    with ExitStack() as stack:
        s3 = stack.enter_context(seaweedfs(tmp_path / "s3"))
        starting: list[tuple[str, AbstractContextManager[ServedProcess]]] = []
        logs: dict[str, list[Path]] = {name: [] for name in SERVICE_NAMES}
        for name in SERVICE_NAMES:
            settings = {f"{peer}_address": peers[peer] for peer in SERVICES[name].calls}
            if name in databases:
                # Checkpoints often, so that both replicas of each authority sign into the shared log during the demo.
                settings.update(database_url=databases[name], ledger_checkpoint_interval_s="0.5")
            if name == "runs":
                settings.update(s3.runs_settings())
            for i, port in enumerate(ports[name]):
                log_dir = tmp_path / f"{name}-{i}"
                log_dir.mkdir()
                logs[name].append(log_dir / f"{name}.err")
                starting.append((name, serving(name, layout.root, log_dir, port=port, **settings)))
        # All at once, as an orchestrator starts replicas (each authority's migration runs once, under its lock).
        with ThreadPoolExecutor(len(starting)) as pool:
            entered = [pool.submit(replica.__enter__) for _, replica in starting]
        for (_, replica), future in zip(starting, entered, strict=True):
            if future.exception() is None:
                stack.push(replica.__exit__)
        replicas: dict[str, list[ServedProcess]] = {name: [] for name in SERVICE_NAMES}
        for (name, _), future in zip(starting, entered, strict=True):
            replicas[name].append(future.result())
        yield Replicated(layout, replicas, databases, s3, logs)


def served_by_caller(log: Path) -> Counter[tuple[str, str]]:
    """(caller, rpc method) -> calls this replica answered, from its request log (one JSON line per RPC)."""
    counted: Counter[tuple[str, str]] = Counter()
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and (entry := json.loads(line)).get("rpc"):
            counted[(str(entry.get("caller")), str(entry["rpc"]).rsplit("/", 1)[-1])] += 1
    return counted


def request_ids(log: Path) -> set[str]:
    """The request ids of the RPCs this replica answered."""
    found = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and (entry := json.loads(line)).get("rpc"):
            found.add(str(entry.get("request_id")))
    return found


def callers(log: Path) -> set[str]:
    return {caller for caller, _ in served_by_caller(log)}


def verify_everything(stack: Replicated, runs_expected: int, export: str | None = None) -> None:
    """`custody runs verify --all`, `custody ledger audit` of each authority, exactly-once delivery, and (`export`: a
    run) its evidence bundle, whose inclusion proofs the replicas of each authority give round-robin."""
    env = stack.cli_environment()
    state = ["--state-dir", str(stack.layout.root)]
    bundle = stack.layout.root.parent / f"bundle-{runs_expected}"
    commands = {
        "verify": ("runs", "verify", "--all", "--json", *state),
        # Every authority (the same audit `custody ledger audit <service>` runs for one), in one process.
        "audit": ("ledger", "audit", "--json", *state),
        **({"export": ("evidence", "export", export, str(bundle), "--json", *state)} if export else {}),
    }
    with ThreadPoolExecutor(len(commands)) as pool:  # side by side: each is mostly a Python start-up
        done = dict(zip(commands, pool.map(lambda args: custody(*args, env=env), commands.values()), strict=True))
    for name, result in done.items():
        assert result.returncode == 0, (name, result.stdout + result.stderr)
    verdict = json.loads(done["verify"].stdout)
    assert verdict["verified"] >= runs_expected and verdict["failed"] == 0, verdict
    audits = json.loads(done["audit"].stdout)
    assert [report["service"] for report in audits] == AUTHORITIES
    for report in audits:
        assert report["ok"] and report["leaves"] > 0 and report["checkpoints"] > 0, report
    if export:
        checked = custody("evidence", "verify", str(bundle), *state, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    runs_db, lineage_db = create_engine(stack.databases["runs"]), create_engine(stack.databases["lineage"])
    try:
        with runs_db.connect() as connection:
            outbox = connection.execute(sa.text("SELECT state, result FROM outbox")).all()
            minted = connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
        with lineage_db.connect() as connection:
            recorded = connection.execute(
                sa.text("SELECT name FROM lineage_versions WHERE artifact_type = 'feasibility_run'")
            ).scalars()
            recorded_names = sorted(recorded)
    finally:
        runs_db.dispose()
        lineage_db.dispose()
    # One message per bound run, each delivered once: lineage holds exactly the versions runs recorded as results.
    assert outbox and {state for state, _ in outbox} == {"DELIVERED"}
    assert sorted(result for _, result in outbox) == recorded_names
    assert len(recorded_names) == len(outbox) <= minted


def probe(stack: Replicated, calls: int = 6) -> None:
    """GetServiceInfo `calls` times on each service through one client (the factory's round-robin channel)."""

    async def run() -> None:
        clients = ServiceClients({name: stack.addresses(name) for name in SERVICE_NAMES}, operator_token(stack.layout))
        try:
            for name in SERVICE_NAMES:
                for _ in range(calls):
                    await clients.stub(name).GetServiceInfo(messages(name).GetServiceInfoRequest())
        finally:
            await clients.close()

    asyncio.run(run())


def play(stack: Replicated, between_steps: Callable[[str], None] | None = None) -> DemoReport:
    """The demo's flow in this process (what `custody demo` runs), calling `between_steps` after each step."""
    layout = stack.layout
    service_token = yaml.safe_load(layout.service_config("art_studio").read_text())["token"]

    class Interrupted(Demo):
        async def step(self, name: str, action: Callable[[], Awaitable[str]]) -> bool:
            ok = await super().step(name, action)
            if between_steps is not None:
                between_steps(name)
            return ok

    async def run() -> DemoReport:
        flow = Interrupted(
            {name: stack.addresses(name) for name in SERVICE_NAMES},
            operator_token(layout),
            lambda: add_demo_reviewer(layout),
            service_token,
            trust_anchors=anchors_file(layout.root).read_bytes(),
        )
        try:
            return await flow.run()
        finally:
            await flow.close()

    return asyncio.run(run())


def test_two_replicas_of_each_service_run_the_demo_round_robin_and_survive_losing_one_each(
    replicated: Replicated,
) -> None:
    stack = replicated
    # The operator's commands find the replicas in the endpoints file, as `custody up` writes it for one each.
    save_endpoints(stack.layout, {name: stack.addresses(name) for name in SERVICE_NAMES})
    options = [arg for name in SERVICE_NAMES for arg in (f"--{name.replace('_', '-')}-address", stack.addresses(name))]
    demo = custody("demo", "--json", "--state-dir", str(stack.layout.root), *options, env=clean_environment())
    assert demo.returncode == 0, demo.stdout + demo.stderr
    report = json.loads(demo.stdout)
    assert report["ok"] and report["verified"] == 5, report

    # Both replicas served the operator's demo calls to runs and lineage, and each service caller's calls (runs
    # calls ai_gateway once per demo, for the explanation, so that pair is left out).
    for name in ("runs", "lineage"):
        for log in stack.logs[name]:
            assert "human:operator" in callers(log), (name, log)
    for caller, callee in (
        ("art_studio", "ai_gateway"),
        ("art_studio", "runs"),
        ("art_studio", "lineage"),
        ("runs", "lineage"),
    ):
        for log in stack.logs[callee]:
            assert f"service:{caller}" in callers(log), f"{callee} replica {log.parent.name} never served {caller}"
    # The demo calls art_studio twice, which round_robin may give to one replica (it starts where it likes):
    # a few calls through the client factory reach both replicas of every service.
    probe(stack)
    for name in SERVICE_NAMES:
        for log in stack.logs[name]:
            assert served_by_caller(log)[("human:operator", "GetServiceInfo")] > 0, (name, log)
    healthy = custody("health", "--json", "--state-dir", str(stack.layout.root), env=clean_environment())
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for name, health in json.loads(healthy.stdout).items():
        assert list(health["replicas"].values()) == ["SERVING"] * REPLICAS, (name, health)
    verify_everything(stack, runs_expected=3, export=report["runs"][-1])

    # Bad path: one replica of each service dies in the middle of a second demo (after its first bind).
    killed: list[ServedProcess] = []

    def kill_after_first_bind(step: str) -> None:
        if step == KILLED_AFTER and not killed:
            for name in SERVICE_NAMES:
                victim = stack.replicas[name][0]
                victim.process.kill()
                victim.process.wait()
                killed.append(victim)

    second = play(stack, kill_after_first_bind)
    assert len(killed) == len(SERVICE_NAMES)
    failed = [step for step in second.steps if not step["ok"]]
    assert second.ok and not failed, failed
    assert second.verified == 5
    # The steps after the kill (each its own request id, carried to every service it reaches) were served by the
    # survivors of all four services: the clients failed over, art_studio's and runs' to their peers too.
    after_kill = set(second.request_ids[[s["name"] for s in second.steps].index(KILLED_AFTER) + 1 :])
    for name in SERVICE_NAMES:
        assert request_ids(stack.logs[name][1]) & after_kill, f"{name}'s survivor served none of the later steps"
        assert not request_ids(stack.logs[name][0]) & after_kill
    # `custody health` names each dead replica (round-robin calls would hide it) and fails.
    unhealthy = custody("health", "--json", "--state-dir", str(stack.layout.root), env=clean_environment())
    assert unhealthy.returncode == 1
    for name, health in json.loads(unhealthy.stdout).items():
        dead, alive = (replica.address for replica in stack.replicas[name])
        assert health["status"] == "UNREACHABLE" and health["replicas"] == {dead: "UNREACHABLE", alive: "SERVING"}
    # The endpoints file still lists the dead replicas: the commands fail over. Survivors sign checkpoints over what
    # the dead replicas appended; every authority audits clean.
    verify_everything(stack, runs_expected=6)
