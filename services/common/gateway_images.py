"""Receiving a GenerateImage stream: metadata first, then each image's bytes, every image checked against its
descriptor (sha256 and size) before the caller sees it.

`ServiceClients.generate_image` (services/common/clients.py) is what services and the CLI call; `ImageAssembler`
is the check itself, fed one message at a time, for callers that hold the stream (tests, synchronous stubs).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field

from custody.ai_gateway.v1 import gateway_pb2
from custody.common.v1 import common_pb2, ledger_pb2
from services.common.hashing import sha256_bytes
from services.common.limits import CHUNK_LIMIT_BYTES, MAX_IMAGES_PER_CALL

# What a receiver buffers at most, whatever a (lying) gateway announces: MAX_IMAGES_PER_CALL images, each at most
# this (a 1024x1024 RGBA PNG cannot exceed ~4 MiB plus overhead; 64 MiB leaves room for providers' larger sizes).
MAX_IMAGE_BYTES = 64 * 1024 * 1024


class ImageStreamError(Exception):
    """The stream broke the GenerateImage contract: out of order, too long, or an image unlike its descriptor."""


@dataclass(frozen=True)
class ReceivedImages:
    envelope: common_pb2.ProvenanceEnvelope
    cost: common_pb2.CostRecord
    ledger: ledger_pb2.LedgerEntry
    revised_prompt: str
    # (descriptor, bytes) by index, each verified against its descriptor.
    images: list[tuple[gateway_pb2.ImageDescriptor, bytes]]


@dataclass
class ImageAssembler:
    metadata: gateway_pb2.ImageMetadata | None = None
    _parts: list[bytearray] = field(default_factory=list)
    _current: int = 0

    def feed(self, response: gateway_pb2.GenerateImageResponse) -> None:
        if response.HasField("metadata"):
            if self.metadata is not None:
                raise ImageStreamError("the stream sent its metadata twice")
            self._start(response.metadata)
            return
        if self.metadata is None:
            raise ImageStreamError("the stream sent image bytes before its metadata")
        chunk = response.chunk
        if len(chunk.data) > CHUNK_LIMIT_BYTES:
            raise ImageStreamError(f"a chunk of image {chunk.index} is larger than {CHUNK_LIMIT_BYTES} bytes")
        if not self._current <= chunk.index < len(self._parts):
            raise ImageStreamError(f"a chunk of image {chunk.index} arrived out of order (at image {self._current})")
        self._current = chunk.index
        part, expected = self._parts[chunk.index], self.metadata.images[chunk.index].size_bytes
        if len(part) + len(chunk.data) > expected:
            raise ImageStreamError(f"image {chunk.index} is longer than the {expected} bytes its descriptor says")
        part += chunk.data

    def _start(self, metadata: gateway_pb2.ImageMetadata) -> None:
        if len(metadata.images) > MAX_IMAGES_PER_CALL:
            raise ImageStreamError(
                f"the stream announces {len(metadata.images)} images; at most {MAX_IMAGES_PER_CALL} are sent"
            )
        oversized = [d.index for d in metadata.images if not 0 < d.size_bytes <= MAX_IMAGE_BYTES]
        if oversized:
            raise ImageStreamError(f"image(s) {oversized} announce a size outside 1..{MAX_IMAGE_BYTES} bytes")
        indices = [d.index for d in metadata.images]
        if indices != list(range(len(indices))):
            raise ImageStreamError(f"image descriptors are not numbered 0..n-1: {indices}")
        if [d.sha256 for d in metadata.images] != list(metadata.envelope.image_sha256):
            raise ImageStreamError("the image descriptors do not match the envelope's image_sha256")
        self.metadata = metadata
        self._parts = [bytearray() for _ in indices]

    def result(self) -> ReceivedImages:
        """The verified images; ImageStreamError if the stream ended early or an image is not what was described."""
        if self.metadata is None:
            raise ImageStreamError("the stream ended without its metadata")
        images = []
        for descriptor, data in zip(self.metadata.images, self._parts, strict=True):
            if len(data) != descriptor.size_bytes:
                raise ImageStreamError(
                    f"image {descriptor.index} ended after {len(data)} of its {descriptor.size_bytes} bytes"
                )
            digest = sha256_bytes(bytes(data))
            if digest != descriptor.sha256:
                raise ImageStreamError(
                    f"image {descriptor.index} has sha256 {digest}, not {descriptor.sha256} as its descriptor says"
                )
            images.append((descriptor, bytes(data)))
        metadata = self.metadata
        return ReceivedImages(metadata.envelope, metadata.cost, metadata.ledger, metadata.revised_prompt, images)


async def collect_images(responses: AsyncIterable[gateway_pb2.GenerateImageResponse]) -> ReceivedImages:
    assembler = ImageAssembler()
    async for response in responses:
        assembler.feed(response)
    return assembler.result()


def collect_images_sync(responses: Iterable[gateway_pb2.GenerateImageResponse]) -> ReceivedImages:
    assembler = ImageAssembler()
    for response in responses:
        assembler.feed(response)
    return assembler.result()
