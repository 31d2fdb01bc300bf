"""A generative client for any Custody service: builds hostile requests for every RPC from the proto descriptors
and calls them over real gRPC, collecting every answer that is INTERNAL or UNKNOWN.

Requests are built by walking the request message's descriptor: strings (unicode, NUL, very long, forged
resource names and page tokens), int64/uint64 extremes, non-finite doubles, unknown enum numbers (proto3 enums
are open), random bytes, repeated fields with many items, and JSON values (Struct/Value/ListValue) nested deeply
or holding NaN. Some requests are valid examples with a few fields replaced, so the hostile value gets past the
first check; some are raw wire bytes nested deeper than any parser accepts, or garbage. Names and page tokens the
service answers with are harvested and fed back, forged too (a real token with its cursor replaced).

Everything is driven by one seeded random generator (CUSTODY_FUZZ_SEED overrides the seed), so a failure
reproduces; the failure lists the RPC, the status and the request.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor, message, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.state import StateLayout
from tests.support.harness import ServiceHarness, bearer, operator_token

SEED = int(os.environ.get("CUSTODY_FUZZ_SEED", "20240615"))
# Calls per RPC, and per-call deadline: together they keep each service's test within about 30 seconds.
CALLS_PER_RPC = int(os.environ.get("CUSTODY_FUZZ_CALLS", "80"))
CALL_TIMEOUT_S = 10.0
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

# What every fuzzed service reported, for the terminal summary (tests/conftest.py prints it).
REPORTS: list[FuzzReport] = []

FORGED_NAMES = [
    "runs/../x",
    "runs/",
    "runs//attachments/",
    "runs/run_" + "0" * 32,
    "runs/run_x/attachments/../../y",
    "runs/%00",
    "projects/a/artifacts/b/c/versions/-1",
    "projects/a/artifacts/b/c/versions/0",
    "projects/a/artifacts/b/c/versions/99999999999999999999999",
    "projects/a/artifacts/b/c/versions/1/../2",
    "projects/a/artifacts/b/c/versions/1e3",
    "projects/a/artifacts/b/c/versions/ 1",
    "projects/a/artifacts/b/c/versions/\u0661",  # an Arabic-Indic digit: str.isdigit() says yes, int() agrees
    "projects//artifacts//",
    "projects/a/artifacts/b/c",
    "projects/a/artifacts/b",
    "projects/a",
    "projects/" + "p" * 5000,
    "calls/..",
    "calls/" + "9" * 40,
    "policies/../../etc/passwd",
    "policies/default",
]
STRINGS = [
    "",
    " ",
    "a",
    "\x00",
    "a\x00b",
    "é",
    "\U0001d54f\U0001f980",
    "\u202e\ufeff",
    "\ud7ff\ue000",
    "'; DROP TABLE runs; --",
    "%s%n{0}",
    "null",
    "NaN",
    "-1",
    "9" * 40,
    "{",
    "[" * 5000,
    "geometry_svg",
    "geometry_spec_json",
    "ai_provenance_json",
    "design_brief",
    "svg_candidate",
    "general_text",
    "rosette_spec",
    "local",
    "openai",
    "design_session",
    "cnc_rosette",
]
INTS = [0, 1, -1, 2, 7, 1000, 1001, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63)]
UINTS = [0, 1, 2**32 - 1, 2**63, 2**64 - 1]
DOUBLES = [0.0, -0.0, 0.5, 1.0, -1.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, 2.0**53 + 1]

_INT_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT_TYPES = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_UINT64_TYPES = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_LIMITS = {
    **dict.fromkeys(_INT_TYPES, (-(2**31), 2**31 - 1)),
    **dict.fromkeys(_INT64_TYPES, (-(2**63), 2**63 - 1)),
    **dict.fromkeys(_UINT_TYPES, (0, 2**32 - 1)),
    **dict.fromkeys(_UINT64_TYPES, (0, 2**64 - 1)),
}
_JSON_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}


@dataclass
class Failure:
    rpc: str
    code: str
    details: str
    request: str


@dataclass
class FuzzReport:
    service: str
    calls: Counter[str] = field(default_factory=Counter)
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def describe_failures(self) -> str:
        lines = [f"{len(self.failures)} call(s) of {self.service} ended INTERNAL/UNKNOWN (seed {SEED}):"]
        for f in self.failures[:20]:
            lines.append(f"  {f.rpc}: {f.code} {f.details[:160]!r}\n    request: {f.request[:600]}")
        return "\n".join(lines)


class Generator:
    """Hostile values for each kind of proto field, and whole requests built from them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: list[str] = []  # resource names the service has answered with
        self.tokens: list[str] = []  # page tokens it has issued
        self.small = False  # inside a field repeated many times: no huge values (the message would be gigabytes)

    # -- scalars -------------------------------------------------------------------------------------------
    def string(self, name: str) -> str:
        rng = self.rng
        roll = rng.random()
        if "token" in name and roll < 0.7:
            return self.page_token()
        if roll < 0.35 and self.names:
            return self.mangle(rng.choice(self.names)) if rng.random() < 0.4 else rng.choice(self.names)
        if roll < 0.5:
            return rng.choice(FORGED_NAMES)
        if roll < 0.55 and not self.small:
            return "x" * rng.choice([1024, 70_000, 1_500_000])
        if roll < 0.65:
            return "".join(chr(rng.choice([0, 0x7F, 0xFFFD, 0x1F600, rng.randrange(0x20, 0xD7FF)])) for _ in range(8))
        if roll < 0.7:
            return rng.choice("0123456789abcdef") * 64  # sha256-shaped
        return rng.choice(STRINGS)

    def mangle(self, name: str) -> str:
        return self.rng.choice(
            [name + "/..", name + "/x", name[:-1], name + "\x00", name.upper(), name + "/versions/-1", name * 2]
        )

    def page_token(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4 and self.tokens:
            real = rng.choice(self.tokens)
            return self.forge_token(real) if rng.random() < 0.8 else real
        encode = lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")  # noqa: E731
        return rng.choice(
            [
                "!!!",
                "====",
                encode(rng.randbytes(24)),
                encode(b"{}"),
                encode(b"[]"),
                encode(b"null"),
                encode(json.dumps({"a": [1], "f": "0" * 16}).encode()),
                encode(b"[" * 100_000 + b"]" * 100_000),
                encode(b'{"a": [NaN], "f": "x"}'),
            ]
        )

    def forge_token(self, token: str) -> str:
        """A token this service issued, with its cursor replaced by hostile values and its filter digest kept."""
        try:
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (ValueError, TypeError):
            return token[::-1]
        if not isinstance(payload, dict):
            return token[::-1]
        cursors: list[Any] = [
            [],
            [None],
            ["x"],
            [2**70],
            [-1, ""],
            [1e308, "\x00"],
            [{"a": 1}, [1]],
            ["9999-99-99T99:99:99Z", "runs/x", 1],
            ["2024-01-01T00:00:00+00:00", 2**63, "z"],
            list(range(50)),
        ]
        after = payload.get("a")
        if isinstance(after, list) and after:
            position = self.rng.randrange(len(after))
            replaced = list(after)
            replaced[position] = self.rng.choice([None, "", 2**64, -(2**63), "\x00", [], {}, 1.5, True])
            cursors.append(replaced)
        payload["a"] = self.rng.choice(cursors)
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def integer(self, kind: int) -> int:
        low, high = _LIMITS[kind]
        value = self.rng.choice([*INTS, *UINTS, self.rng.randint(low, high)])
        return min(max(value, low), high)

    def double(self) -> float:
        return self.rng.choice([*DOUBLES, self.rng.uniform(-1e6, 1e6), self.rng.random()])

    def raw_bytes(self, name: str) -> bytes:
        rng = self.rng
        return rng.choice(
            [
                b"",
                b"\x00",
                rng.randbytes(rng.randrange(1, 64)),
                b"<svg/>",
                b'<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>',
                b"[" * (16 if self.small else 50_000),
                b'{"canvas": {"diameter_mm": NaN}, "shapes": []}',
                b"\xff\xfe" + "é".encode("utf-16-le"),
                b"x" * (16 if self.small else rng.choice([1024, 1_100_000])),
            ]
        )

    # -- JSON values -------------------------------------------------------------------------------------------
    def json_value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.08:
            return self.nested(rng.randrange(20, 48))
        if depth > 3 or roll < 0.5:
            return rng.choice([None, True, False, "", "\x00", "é" * 3, 0, -1, 2**53, *DOUBLES, self.string("")])
        if roll < 0.75:
            return [self.json_value(depth + 1) for _ in range(rng.randrange(0, 4))]
        return {rng.choice(["", "a", "\x00", "é", "$ref", "__proto__", "x" * 300]): self.json_value(depth + 1)}

    def nested(self, depth: int) -> Any:
        """A JSON value nested `depth` levels, as deep as the protobuf parser still accepts around 48."""
        value: Any = self.rng.choice([1, "x", math.nan])
        for level in range(depth):
            value = [value] if level % 2 else {"k": value}
        return value

    def set_json(self, target: message.Message) -> None:
        kind = target.DESCRIPTOR.full_name
        if kind == "google.protobuf.Struct":
            assert isinstance(target, struct_pb2.Struct)
            for _ in range(self.rng.randrange(0, 4)):
                key = self.rng.choice(["a", "", "\x00", "shapes", "canvas", "diameter_mm", "schema_version", "type"])
                _assign_value(target.fields[key], self.json_value())
        elif kind == "google.protobuf.ListValue":
            assert isinstance(target, struct_pb2.ListValue)
            for _ in range(self.rng.randrange(0, 4)):
                _assign_value(target.values.add(), self.json_value())
        else:
            assert isinstance(target, struct_pb2.Value)
            _assign_value(target, self.json_value())

    # -- messages -----------------------------------------------------------------------------------------------
    def fill(self, target: message.Message, depth: int = 0) -> None:
        """Sets each field of `target` with some probability (every field, more or less often)."""
        for field_descriptor in target.DESCRIPTOR.fields:
            if self.rng.random() < 0.55:
                self.set_field(target, field_descriptor, depth)

    def set_field(self, target: message.Message, fd: FieldDescriptor, depth: int) -> None:
        rng = self.rng
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            mapping = getattr(target, fd.name)
            key_fd, value_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            count = rng.choice([0, 1, 3, 200])
            with self._small(count > 3):
                for _ in range(count):
                    key = self.scalar(key_fd)
                    if value_fd.message_type is None:
                        mapping[key] = self.scalar(value_fd)
                    else:
                        self.fill(mapping[key], depth + 1)
            return
        if _is_repeated(fd):
            container = getattr(target, fd.name)
            count = rng.choice([0, 1, 2, 3, 5, 1000]) if depth < 2 else rng.choice([0, 1, 2])
            with self._small(count > 5):
                for _ in range(count):
                    if fd.message_type is None:
                        container.append(self.scalar(fd))
                    else:
                        self.message_value(container.add(), depth + 1)
            return
        if fd.message_type is not None:
            if depth < 4:
                self.message_value(getattr(target, fd.name), depth + 1)
            return
        setattr(target, fd.name, self.scalar(fd))

    @contextlib.contextmanager
    def _small(self, small: bool) -> Iterator[None]:
        before, self.small = self.small, self.small or small
        try:
            yield
        finally:
            self.small = before

    def message_value(self, target: message.Message, depth: int) -> None:
        kind = target.DESCRIPTOR.full_name
        if kind in _JSON_TYPES:
            self.set_json(target)
        elif kind == "google.protobuf.Timestamp":
            assert isinstance(target, timestamp_pb2.Timestamp)
            target.seconds = self.rng.choice([0, -1, 2**40, -(2**40), 253402300800, -62135596801, 1_700_000_000])
            target.nanos = self.rng.choice([0, 999_999_999, -1, 10**9])
        else:
            target.SetInParent()
            self.fill(target, depth)

    def scalar(self, fd: FieldDescriptor) -> Any:
        kind = fd.type
        if kind == FieldDescriptor.TYPE_STRING:
            return self.string(fd.name)
        if kind == FieldDescriptor.TYPE_BYTES:
            return self.raw_bytes(fd.name)
        if kind == FieldDescriptor.TYPE_BOOL:
            return self.rng.random() < 0.5
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            value = self.double()
            return (
                value if kind == FieldDescriptor.TYPE_DOUBLE or abs(value) < 3e38 or not math.isfinite(value) else 1.0
            )
        if kind == FieldDescriptor.TYPE_ENUM:
            known = [v.number for v in fd.enum_type.values]
            return self.rng.choice([*known, *known, -1, 99, 2**31 - 1, -(2**31)])
        return self.integer(kind)

    def mutate(self, seed: message.Message, depth: int = 0) -> None:
        """Replaces one to three fields of a valid request (or of one of its submessages) with hostile values."""
        for _ in range(self.rng.randrange(1, 4)):
            target = seed
            for _ in range(3):  # sometimes descend into a set submessage first
                nested = [
                    fd
                    for fd in target.DESCRIPTOR.fields
                    if fd.message_type is not None
                    and not _is_repeated(fd)
                    and fd.message_type.full_name not in _JSON_TYPES
                    and target.HasField(fd.name)
                ]
                if not nested or self.rng.random() < 0.5:
                    break
                target = getattr(target, self.rng.choice(nested).name)
            fields = target.DESCRIPTOR.fields
            if fields:
                fd = self.rng.choice(fields)
                if not self._mutate_json_text(target, fd):
                    target.ClearField(fd.name)
                    self.set_field(target, fd, depth + 1)

    def _mutate_json_text(self, target: message.Message, fd: FieldDescriptor) -> bool:
        """For a string or bytes field holding a JSON document (a spec): replaces one value deep inside it."""
        if _is_repeated(fd) or fd.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            return False
        try:
            document = json.loads(getattr(target, fd.name))
        except (ValueError, TypeError, RecursionError):
            return False
        if not isinstance(document, dict | list) or self.rng.random() < 0.3:
            return False
        node: Any = document
        for _ in range(self.rng.randrange(1, 6)):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = self.rng.choice(keys)
            if isinstance(node[key], dict | list) and self.rng.random() < 0.7:
                node = node[key]
                continue
            node[key] = self.json_value(2)
            break
        text = json.dumps(document)  # NaN and Infinity come out as the literals Python's json accepts
        setattr(target, fd.name, text.encode() if fd.type == FieldDescriptor.TYPE_BYTES else text)
        return True

    def wire(self, request_type: descriptor.Descriptor, base: bytes) -> bytes:
        """Raw bytes: a request nested deeper than the protobuf parser's limit, truncated, or garbage."""
        rng = self.rng
        choice = rng.random()
        json_fields = [f for f in request_type.fields if f.message_type and f.message_type.full_name in _JSON_TYPES]
        message_fields = [f for f in request_type.fields if f.message_type is not None]
        if choice < 0.4 and (json_fields or message_fields):
            fd = rng.choice(json_fields or message_fields)
            return base + length_delimited(fd.number, deep_bytes(rng.choice([60, 200, 5000]), fd))
        if choice < 0.6 and base:
            return base[: rng.randrange(len(base))] + b"\xff"
        if choice < 0.8:
            return base + b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field claiming 4 GiB
        return rng.randbytes(rng.randrange(1, 200))

    def harvest(self, answer: message.Message) -> None:
        """Remembers resource names and page tokens found anywhere in an answer."""
        for value, name in _strings(answer):
            if name.endswith("page_token") and value:
                self.tokens.append(value)
            elif "/" in value and len(value) < 300 and value not in self.names:
                self.names.append(value)
        del self.names[:-200], self.tokens[:-50]


def deep_bytes(depth: int, fd: FieldDescriptor) -> bytes:
    """google.protobuf.Value bytes nested `depth` ListValues deep (or a message nested in its first message field)."""
    if fd.message_type.full_name not in _JSON_TYPES:
        inner = b""
        for _ in range(depth):
            inner = length_delimited(fd.number, inner)
        return inner
    value = b"\x1a\x01x"  # Value.string_value = "x"
    for _ in range(depth):
        value = length_delimited(6, length_delimited(1, value))  # Value.list_value.values[0]
    if fd.message_type.full_name == "google.protobuf.Struct":
        return length_delimited(1, length_delimited(1, b"k") + length_delimited(2, value))  # fields["k"]
    if fd.message_type.full_name == "google.protobuf.ListValue":
        return length_delimited(1, value)
    return value


def length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _assign_value(target: struct_pb2.Value, value: Any) -> None:
    """Sets a google.protobuf.Value without recursion limits of its own (Struct.update recurses)."""
    stack = [(target, value)]
    while stack:
        slot, item = stack.pop()
        if item is None:
            slot.null_value = struct_pb2.NULL_VALUE
        elif isinstance(item, bool):
            slot.bool_value = item
        elif isinstance(item, int | float):
            slot.number_value = float(item)
        elif isinstance(item, str):
            slot.string_value = item
        elif isinstance(item, list):
            slot.list_value.SetInParent()
            stack.extend((slot.list_value.values.add(), element) for element in item)
        else:
            slot.struct_value.SetInParent()
            stack.extend((slot.struct_value.fields[k], v) for k, v in item.items())


def _strings(answer: message.Message) -> Iterator[tuple[str, str]]:
    stack = [answer]
    while stack:
        current = stack.pop()
        for fd, value in current.ListFields():
            if fd.message_type is not None:
                if fd.message_type.GetOptions().map_entry:
                    continue
                stack.extend(value if _is_repeated(fd) else [value])
            elif fd.type == FieldDescriptor.TYPE_STRING:
                yield from ((v, fd.name) for v in (value if _is_repeated(fd) else [value]))


@dataclass
class Rpc:
    name: str
    path: str
    request_type: type[message.Message]
    response_type: type[message.Message]
    client_streaming: bool
    server_streaming: bool


def rpcs(service: descriptor.ServiceDescriptor, messages: Callable[[descriptor.Descriptor], type]) -> list[Rpc]:
    return [
        Rpc(
            m.name,
            f"/{service.full_name}/{m.name}",
            messages(m.input_type),
            messages(m.output_type),
            m.client_streaming,
            m.server_streaming,
        )
        for m in service.methods
    ]


# Builds a valid request for an RPC (or a sequence of them for client streaming), so mutations get past the
# first check; `names` holds the resource names harvested so far.
Seed = Callable[[random.Random, list[str]], message.Message | list[message.Message]]


class Fuzzer:
    def __init__(
        self,
        harness: ServiceHarness,
        layout: StateLayout,
        service: descriptor.ServiceDescriptor,
        seeds: dict[str, Seed] | None = None,
        calls_per_rpc: int = CALLS_PER_RPC,
    ) -> None:
        from google.protobuf import message_factory

        self.harness = harness
        self.service = service
        self.rpcs = rpcs(service, message_factory.GetMessageClass)
        self.seeds = seeds or {}
        self.calls_per_rpc = calls_per_rpc
        self.metadata = bearer(operator_token(layout))
        self.generator = Generator(random.Random(f"{SEED}:{service.full_name}"))
        self.report = FuzzReport(harness.service)
        self._channel = grpc.insecure_channel(
            harness.address,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )

    def run(self) -> FuzzReport:
        started = time.perf_counter()
        try:
            for _ in range(self.calls_per_rpc):
                for rpc in self.rpcs:  # interleaved, so names harvested from one RPC reach the others
                    self._call(rpc, self._request(rpc))
        finally:
            self.report.seconds = time.perf_counter() - started
            REPORTS.append(self.report)
        return self.report

    def serving(self) -> int:
        """The service's grpc.health.v1 status after the fuzzing."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=self.service.full_name), timeout=10)
        return int(answer.status)

    def close(self) -> None:
        self._channel.close()

    def assert_survives(self) -> None:
        """Runs every generated call; fails on any INTERNAL or UNKNOWN answer, or if the service stops SERVING."""
        try:
            report = self.run()
            assert not report.failures, report.describe_failures()
            assert self.serving() == health_pb2.HealthCheckResponse.SERVING
        finally:
            self.close()

    def _request(self, rpc: Rpc) -> list[bytes]:
        """The request messages of one call, serialized (several for a client-streaming RPC)."""
        gen, rng = self.generator, self.generator.rng
        roll = rng.random()
        seed = self.seeds.get(rpc.name)
        if seed is not None and roll < 0.55:
            built = seed(rng, gen.names)
            messages = built if isinstance(built, list) else [built]
            if roll < 0.5:  # otherwise the valid request itself, to make names and tokens to harvest
                for item in rng.sample(messages, k=min(len(messages), rng.choice([1, 1, 2]))):
                    gen.mutate(item)
        else:
            messages = []
            for _ in range(rng.choice([0, 1, 2, 3, 4]) if rpc.client_streaming else 1):
                request = rpc.request_type()
                gen.fill(request)
                messages.append(request)
        wire = [m.SerializeToString() for m in messages]
        if rng.random() < 0.08 and wire:
            position = rng.randrange(len(wire))
            wire[position] = gen.wire(rpc.request_type.DESCRIPTOR, wire[position])
        return wire

    def _call(self, rpc: Rpc, wire: list[bytes]) -> None:
        identity: Callable[[bytes], bytes] = lambda raw: raw  # noqa: E731
        parse = rpc.response_type.FromString
        self.report.calls[rpc.name] += 1
        try:
            if rpc.client_streaming:
                method = self._channel.stream_unary(rpc.path, request_serializer=identity, response_deserializer=parse)
                answers = [method(iter(wire), metadata=self.metadata, timeout=CALL_TIMEOUT_S)]
            elif rpc.server_streaming:
                method = self._channel.unary_stream(rpc.path, request_serializer=identity, response_deserializer=parse)
                answers = list(method(wire[0], metadata=self.metadata, timeout=CALL_TIMEOUT_S))
            else:
                method = self._channel.unary_unary(rpc.path, request_serializer=identity, response_deserializer=parse)
                answers = [method(wire[0], metadata=self.metadata, timeout=CALL_TIMEOUT_S)]
            code = grpc.StatusCode.OK
            for answer in answers:
                self.generator.harvest(answer)
        except grpc.RpcError as error:
            code = error.code()
            if code in BAD_CODES:
                shown = [_show(rpc.request_type, raw) for raw in wire]
                self.report.failures.append(Failure(rpc.name, code.name, error.details() or "", " | ".join(shown)))
        self.report.codes.setdefault(rpc.name, Counter())[code.name] += 1


def _show(request_type: type[message.Message], raw: bytes) -> str:
    try:
        text = str(request_type.FromString(raw)).replace("\n", " ")
    except Exception:  # hostile wire bytes that do not parse: show them as bytes
        text = f"<{len(raw)} raw bytes> {raw[:80]!r}"
    return text if len(text) < 2000 else text[:2000] + "..."


def export_reports() -> list[dict[str, Any]]:
    """This process's reports as plain data, for a pytest-xdist worker to hand to the controller, which prints
    the summary (tests/conftest.py)."""
    return [
        {
            "service": r.service,
            "calls": dict(r.calls),
            "codes": {rpc: dict(codes) for rpc, codes in r.codes.items()},
            "failures": [[f.rpc, f.code, f.details, f.request] for f in r.failures],
            "seconds": r.seconds,
        }
        for r in REPORTS
    ]


def import_reports(exported: list[dict[str, Any]]) -> None:
    """Adds reports another process exported (a pytest-xdist worker's) to this one's."""
    for r in exported:
        REPORTS.append(
            FuzzReport(
                r["service"],
                Counter(r["calls"]),
                {rpc: Counter(codes) for rpc, codes in r["codes"].items()},
                [Failure(*f) for f in r["failures"]],
                r["seconds"],
            )
        )


def summary_lines() -> list[str]:
    """Calls made per RPC and the status codes they ended with, one line per RPC (pytest's terminal summary)."""
    lines = []
    for report in sorted(REPORTS, key=lambda r: r.service):  # workers finish in any order
        lines.append(
            f"{report.service}: {sum(report.calls.values())} generated calls in {report.seconds:.1f} s "
            f"(seed {SEED}), {len(report.failures)} INTERNAL/UNKNOWN"
        )
        for rpc, count in report.calls.items():
            codes = ", ".join(f"{code} {n}" for code, n in report.codes.get(rpc, Counter()).most_common())
            lines.append(f"  {rpc:<24} {count:>5}  {codes}")
    return lines
