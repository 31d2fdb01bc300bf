"""C2SP signed notes and tlog-checkpoint bodies, with Ed25519 keys in the golang.org/x/mod/sumdb/note formats.

(Provisional: replaced by the core branch's fuller implementation.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
DASH = "\u2014"


class NoteError(ValueError):
    pass


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint(body: str) -> Checkpoint:
    if not body.endswith("\n"):
        raise NoteError("checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise NoteError("checkpoint needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError(f"tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise NoteError("root hash is not base64") from None
    if len(root) != 32:
        raise NoteError("root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_note_key(name: str) -> tuple[str, str]:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = _public_bytes(private.public_key())
    key_hash = _key_hash(name, public).hex()
    private_text = f"PRIVATE+KEY+{name}+{key_hash}+{base64.b64encode(bytes([ED25519]) + seed).decode()}"
    vkey = f"{name}+{key_hash}+{base64.b64encode(bytes([ED25519]) + public).decode()}"
    return private_text, vkey


class NoteSigner:
    def __init__(self, private_key_text: str) -> None:
        parts = private_key_text.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("not a note private key")
        self.name = parts[2]
        raw = base64.b64decode(parts[4])
        self._key = Ed25519PrivateKey.from_private_bytes(raw[1:])
        public = _public_bytes(self._key.public_key())
        self._hash = _key_hash(self.name, public)
        self.vkey = f"{self.name}+{self._hash.hex()}+{base64.b64encode(bytes([ED25519]) + public).decode()}"

    def sign(self, body: str) -> str:
        signature = self._key.sign(body.encode())
        return f"{body}\n{DASH} {self.name} {base64.b64encode(self._hash + signature).decode()}\n"


class NoteVerifier:
    def __init__(self, vkey_text: str) -> None:
        parts = vkey_text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("not a note verifier key")
        self.name = parts[0]
        raw = base64.b64decode(parts[2])
        self._key = Ed25519PublicKey.from_public_bytes(raw[1:])
        self._hash = bytes.fromhex(parts[1])

    def verify(self, note: str) -> str:
        body, sep, signatures = note.partition("\n\n")
        if not sep:
            raise NoteError("note has no signature block")
        body += "\n"
        for line in signatures.splitlines():
            prefix = f"{DASH} {self.name} "
            if not line.startswith(prefix):
                continue
            raw = base64.b64decode(line[len(prefix) :])
            if raw[:4] != self._hash:
                continue
            try:
                self._key.verify(raw[4:], body.encode())
                return body
            except InvalidSignature:
                raise NoteError(f"signature by {self.name} does not verify") from None
        raise NoteError(f"note is not signed by {self.name}")
