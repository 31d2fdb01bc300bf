"""C2SP signed notes and tlog checkpoints with Ed25519 keys, byte-compatible with golang.org/x/mod/sumdb/note.

A checkpoint body is "<origin>\\n<size>\\n<base64 root>\\n" plus optional extension lines (c2sp.org/tlog-checkpoint);
a signed note is the body, a blank line, then one line per signature, "— <key name> <base64(key hash || sig)>\\n"
(c2sp.org/signed-note). Keys are written as the Go package writes them: verifier key "<name>+<hash>+<base64(0x01 ||
public key)>", private key "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>", the hash being the first four bytes
of SHA-256(name || "\\n" || 0x01 || public key) in hex.

Hand-written because no established, maintained Python library implements the format: sigstore-python reads Rekor
checkpoints in a private module, and the PyPI packages that offer signed notes are young single-author projects
tied to their own ecosystems. The format is small, and tests/unit/ledger/test_note.py checks this module against
notes and keys produced by the Go implementation, not only against itself.

Parsing follows Go's note.Open and is stricter where strictness costs an honest signer nothing: every base64 value
must be canonical (so no two texts carry the same signature), hex key hashes are lower case, and a checkpoint's size
must fit an int64. A note signed by this verifier's key verifies only if every signature line is well formed, there
are at most 100 of them, and the first line for this key (name and hash) holds a valid signature; lines of other
keys are ignored, as the spec requires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_SIGNATURES = 100
MAX_TREE_SIZE = 2**63 - 1  # checkpoints travel in int64 proto fields
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_ED25519 = b"\x01"
_HASH_HEX = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed, or a note this key did not sign; the message says which."""


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 in its one canonical spelling (padding, no stray bits)."""
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None
    if base64.b64encode(value).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return value


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _check_text(text: str, what: str) -> bytes:
    """The UTF-8 bytes of `text`, which must hold no control character but newline."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None
    if _CONTROL.search(text):
        raise NoteError(f"{what} contains a control character")
    return encoded


def _check_name(name: str) -> None:
    if not name or "+" in name or any(char.isspace() for char in name) or _CONTROL.search(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces, control characters or '+'")
    _check_text(name, "the key name")


def _key_hash(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519 + public_key).digest()[:4]


def _verifier_key(name: str, public_key: bytes) -> str:
    return f"{name}+{_key_hash(name, public_key).hex()}+{_b64encode(_ED25519 + public_key)}"


def _split_key(text: str, parts: int, what: str) -> list[str]:
    # The base64 key material may itself contain '+', so only the first separators count.
    fields = text.split("+", parts - 1)
    if len(fields) != parts:
        raise NoteError(f"{what} must have {parts} '+'-separated fields")
    return fields


def _key_material(name: str, hash_hex: str, key64: str, what: str) -> bytes:
    _check_name(name)
    if not _HASH_HEX.fullmatch(hash_hex):
        raise NoteError(f"{what} hash {hash_hex!r} is not 8 lower-case hex digits")
    material = _b64decode(key64, f"{what} material")
    if material[:1] != _ED25519:
        raise NoteError(f"{what} is not an Ed25519 key (algorithm byte 0x01)")
    if len(material) != 33:
        raise NoteError(f"{what} must hold a 32-byte Ed25519 key")
    return material[1:]


def generate_note_key(name: str) -> tuple[str, str]:
    """A new Ed25519 note key for `name`: (private key text, verifier key text). Keep the first one secret."""
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes_raw()
    hash_hex = _key_hash(name, public).hex()
    return f"PRIVATE+KEY+{name}+{hash_hex}+{_b64encode(_ED25519 + seed)}", _verifier_key(name, public)


class NoteSigner:
    """Signs note bodies with the Ed25519 key in a "PRIVATE+KEY+..." text."""

    def __init__(self, private_key_text: str) -> None:
        private, key, name, hash_hex, key64 = _split_key(private_key_text.strip(), 5, "the private note key")
        if (private, key) != ("PRIVATE", "KEY"):
            raise NoteError('a private note key starts with "PRIVATE+KEY+"')
        seed = _key_material(name, hash_hex, key64, "the private note key")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes_raw()
        if _key_hash(name, public).hex() != hash_hex:
            raise NoteError("the private note key's hash does not match its key")
        self.name = name
        self.key_hash = bytes.fromhex(hash_hex)
        self.vkey = _verifier_key(name, public)

    def __repr__(self) -> str:
        return f"NoteSigner({self.vkey!r})"

    def sign(self, body: str) -> str:
        """The signed note: `body` (which must end in a newline), a blank line and this key's signature line."""
        encoded = _check_text(body, "the note body")
        if not body.endswith("\n"):
            raise NoteError("the note body must end with a newline")
        signature = self._key.sign(encoded)
        return f"{body}\n{SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_hash + signature)}\n"


class NoteVerifier:
    """Opens notes signed by the Ed25519 key of one verifier key text."""

    def __init__(self, vkey_text: str) -> None:
        name, hash_hex, key64 = _split_key(vkey_text.strip(), 3, "the verifier key")
        public = _key_material(name, hash_hex, key64, "the verifier key")
        if _key_hash(name, public).hex() != hash_hex:
            raise NoteError("the verifier key's hash does not match its key")
        self._key = Ed25519PublicKey.from_public_bytes(public)
        self.name = name
        self.key_hash = bytes.fromhex(hash_hex)
        self.vkey = _verifier_key(name, public)

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey!r})"

    def verify(self, note: str | bytes) -> str:
        """The body of `note` if this key signed it; NoteError otherwise (bytes must be UTF-8)."""
        if isinstance(note, bytes):
            try:
                note = note.decode("utf-8")
            except UnicodeDecodeError:
                raise NoteError("the note is not valid UTF-8") from None
        _check_text(note, "the note")
        split = note.rfind("\n\n")
        if split < 0:
            raise NoteError("the note has no blank line before its signatures")
        body, block = note[: split + 1], note[split + 2 :]
        if not block.endswith("\n"):
            raise NoteError("the note's signature block must end with a newline")
        lines = block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"the note has {len(lines)} signatures; at most {MAX_SIGNATURES} are read")
        verified = False
        seen = False
        for line in lines:
            name, key_hash, signature = _parse_signature_line(line)
            if name != self.name or key_hash != self.key_hash or seen:
                continue  # another key's signature, or a repeat of ours: ignored, as note.Open does
            seen = True
            try:
                self._key.verify(signature, body.encode("utf-8"))
            except InvalidSignature:
                raise NoteError(f"the note's signature by {self.name}+{key_hash.hex()} is invalid") from None
            verified = True
        if not verified:
            raise NoteError(f"the note is not signed by {self.name}+{self.key_hash.hex()}")
        return body

    def verify_checkpoint(self, note: str | bytes) -> Checkpoint:
        """The checkpoint in `note` if this key signed it and its origin is this key's name."""
        checkpoint = parse_checkpoint(self.verify(note))
        if checkpoint.origin != self.name:
            raise NoteError(f"the checkpoint's origin {checkpoint.origin!r} is not the key name {self.name!r}")
        return checkpoint


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("a signature line must start with an em dash and a space")
    name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not encoded:
        raise NoteError("a signature line is '\u2014 <key name> <base64 signature>'")
    _check_name(name)
    raw = _b64decode(encoded, "a signature")
    if len(raw) < 5:
        raise NoteError("a signature is a 4-byte key hash and at least one byte of signature")
    return name, raw[:4], raw[4:]


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: the log's origin, its tree size and the RFC 6962 root at that size."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("a checkpoint origin must be one non-empty line")
        _check_text(self.origin, "the checkpoint origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"a checkpoint tree size must be an integer from 0 to {MAX_TREE_SIZE}")
        if type(self.root) is not bytes or len(self.root) != 32:
            raise NoteError("a checkpoint root must be 32 bytes")
        for line in self.extensions:
            if not line or "\n" in line:
                raise NoteError("a checkpoint extension must be one non-empty line")
            _check_text(line, "a checkpoint extension")

    def body(self) -> str:
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), _b64encode(self.root), *self.extensions))


def parse_checkpoint(body: str) -> Checkpoint:
    """The checkpoint a note body states; NoteError naming the first line that is not as c2sp.org/tlog-checkpoint
    says (origin non-empty, size decimal without leading zeros, root the base64 of 32 bytes, no empty line)."""
    _check_text(body, "the checkpoint")
    if not body.endswith("\n"):
        raise NoteError("a checkpoint must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has at least three lines: origin, tree size and root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("the checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise NoteError(f"the checkpoint tree size {size_text!r} is not a decimal number without leading zeros")
    if int(size_text) > MAX_TREE_SIZE:
        raise NoteError(f"the checkpoint tree size {size_text} is larger than {MAX_TREE_SIZE}")
    root = _b64decode(root_text, "the checkpoint root hash")
    if len(root) != 32:
        raise NoteError(f"the checkpoint root hash is {len(root)} bytes, not 32")
    if any(not line for line in extensions):
        raise NoteError("a checkpoint extension line is empty")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))
