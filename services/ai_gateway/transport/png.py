"""Minimal PNG writing and checking (stdlib zlib and struct only).

`encode_png` writes 8-bit RGB or RGBA images with one IDAT chunk, filter type 0 on every row and a fixed zlib
level, so the same pixels always give the same bytes with the same zlib build (no timestamps, no text chunks, no
encoder choices left open); a library would add a dependency and make us trust its defaults for that guarantee.
`png_dimensions` checks the signature and the IHDR chunk (its CRC included) of bytes a provider claims are a PNG.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MEDIA_TYPE = "image/png"
ZLIB_LEVEL = 9
_COLOR_TYPES = {3: 2, 4: 6}  # channels -> PNG colour type (RGB, RGBA)


class NotPng(ValueError):
    """Bytes that are not a PNG image."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: list[bytes], *, channels: int = 3, level: int = ZLIB_LEVEL) -> bytes:
    """A PNG of `rows` (`height` rows of `width * channels` bytes each)."""
    if len(rows) != height or any(len(row) != width * channels for row in rows):
        raise ValueError("rows do not match width, height and channels")
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def png_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG; NotPng unless it starts with the signature and a well-formed IHDR chunk."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE):
        raise NotPng("not a PNG (no PNG signature)")
    length, kind = struct.unpack(">I4s", data[8:16])
    body, crc = data[16:29], struct.unpack(">I", data[29:33])[0]
    if length != 13 or kind != b"IHDR" or zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
        raise NotPng("not a PNG (its first chunk is not a valid IHDR)")
    width, height = struct.unpack(">II", body[:8])
    if width == 0 or height == 0:
        raise NotPng("not a PNG (zero width or height)")
    return width, height
