"""The `local` provider's images: a deterministic PNG rosette drawn from (prompt, seed, size, index).

Byte-identical across processes and runs: every choice (petal count, rings, twist, palette) comes from the
sha256 of the canonical JSON of those four values, nothing reads the clock or a random source, and the PNG is
written by transport/png.py (stdlib zlib and struct, one IDAT, fixed filter and level) rather than an imaging
library whose encoder defaults and metadata chunks we would have to trust. The pattern is computed on a grid of at
most 256 x 256 and scaled up by whole pixels, so a 1024 x 1024 image costs what a 256 x 256 one does. (The
floating-point maths is libm's: the same bytes on the same platform; another libm could differ in a last bit.)
"""

from __future__ import annotations

import math

from services.ai_gateway.transport.png import encode_png
from services.common.hashing import sha256_canonical

GRID = 256


def render(prompt: str, seed: str, width: int, height: int, index: int) -> bytes:
    """The PNG of image `index` for this prompt, seed and size."""
    digest = bytes.fromhex(
        sha256_canonical({"prompt": prompt, "seed": seed, "size": f"{width}x{height}", "index": index})
    )
    petals = 3 + digest[0] % 14
    rings = 2 + digest[1] % 5
    twist = (digest[2] / 255 - 0.5) * 6
    palette = [tuple(digest[4 + 3 * i : 7 + 3 * i]) for i in range(4)]
    background = tuple(32 + c // 4 for c in digest[16:19])
    grid_w, grid_h = min(width, GRID), min(height, GRID)
    scale_x, scale_y = width // grid_w, height // grid_h
    rows: list[bytes] = []
    for gy in range(grid_h):
        y = (gy + 0.5) / grid_h * 2 - 1
        row = bytearray()
        for gx in range(grid_w):
            x = (gx + 0.5) / grid_w * 2 - 1
            r = math.hypot(x, y)
            if r > 0.98:
                pixel: tuple[int, ...] = background
            else:
                petal = 0.5 + 0.5 * math.cos(petals * math.atan2(y, x) + twist * r)
                band = int(r * rings) % 2
                first, second = palette[2 * band], palette[2 * band + 1]
                pixel = tuple(int(a + (b - a) * petal) for a, b in zip(first, second, strict=True))
            row += bytes(pixel) * scale_x
        rows.extend([bytes(row)] * scale_y)
    return encode_png(width, height, rows)
