"""The asset formats Custody signs, recognised by their bytes (a declared content type is only a claim)."""

from __future__ import annotations

from services.common.content_credentials.errors import CredentialsError

PNG = "image/png"
SVG = "image/svg+xml"
SUPPORTED_MEDIA_TYPES = frozenset({PNG, SVG})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BOM = b"\xef\xbb\xbf"
# How far into a document its <svg root element may start (after the declaration and comments).
_PROLOGUE_LIMIT = 4096


def media_type_of(data: bytes) -> str:
    """image/png or image/svg+xml by the bytes themselves; CredentialsError for anything else."""
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    if _is_svg(data[:_PROLOGUE_LIMIT]):
        return SVG
    raise CredentialsError("the bytes are neither a PNG image nor an SVG document")


def _is_svg(head: bytes) -> bool:
    """An optional BOM, XML declaration, comments and whitespace, then `<svg`: a scan, not a regex, so no input
    makes it backtrack."""
    rest = head.removeprefix(_BOM).lstrip()
    if rest.startswith(b"<?xml"):
        end = rest.find(b"?>")
        if end < 0:
            return False
        rest = rest[end + 2 :].lstrip()
    while rest.startswith(b"<!--"):
        end = rest.find(b"-->", 4)
        if end < 0:
            return False
        rest = rest[end + 3 :].lstrip()
    return rest.startswith(b"<svg") and rest[4:5] in (b" ", b"\t", b"\r", b"\n", b">")


def ambiguity(data: bytes, media_type: str) -> str | None:
    """Why an asset is not one to sign, or None. Refused: an SVG already holding C2PA manifest markup (a second,
    planted manifest would ride inside a trusted file, and another reader may pick it), and a PNG with a C2PA chunk
    of its own, a malformed chunk list, or bytes after IEND (what viewers show and what a reader parses could
    differ)."""
    if media_type == SVG:
        if b"c2pa.org/manifest" in data or b"c2pa:manifest" in data:
            return "the SVG already holds C2PA manifest markup"
        return None
    offset = len(_PNG_SIGNATURE)
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        offset += 12 + length
        if offset > len(data):
            break
        if kind == b"caBX":
            return "the PNG already holds a C2PA (caBX) chunk"
        if kind == b"IEND":
            return None if offset == len(data) else "the PNG has bytes after its IEND chunk"
    return "the PNG's chunks do not end with IEND"
