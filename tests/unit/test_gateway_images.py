"""The GenerateImage client check (services/common/gateway_images.py): a stream whose bytes do not match its first
message, or that breaks the order, is refused with a clear error; an honest one gives every image back."""

from __future__ import annotations

import pytest

from custody.ai_gateway.v1 import gateway_pb2 as pb
from custody.common.v1 import common_pb2
from services.common.gateway_images import ImageStreamError, collect_images_sync
from services.common.hashing import sha256_bytes

IMAGES = [b"\x89PNG first image bytes" * 10, b"\x89PNG second"]


def honest(images: list[bytes] = IMAGES, chunk: int = 16) -> list[pb.GenerateImageResponse]:
    digests = [sha256_bytes(data) for data in images]
    metadata = pb.ImageMetadata(
        envelope=common_pb2.ProvenanceEnvelope(call="calls/c1", image_sha256=digests),
        images=[
            pb.ImageDescriptor(index=i, media_type="image/png", sha256=d, size_bytes=len(data), width=1, height=1)
            for i, (d, data) in enumerate(zip(digests, images, strict=True))
        ],
    )
    messages = [pb.GenerateImageResponse(metadata=metadata)]
    for index, data in enumerate(images):
        for start in range(0, len(data), chunk):
            messages.append(
                pb.GenerateImageResponse(chunk=pb.ImageChunk(index=index, data=data[start : start + chunk]))
            )
    return messages


def test_an_honest_stream_gives_every_image_with_its_descriptor() -> None:
    received = collect_images_sync(honest())
    assert [data for _, data in received.images] == IMAGES
    assert received.envelope.call == "calls/c1"


def test_a_changed_byte_is_refused_naming_the_image() -> None:
    messages = honest()
    last = messages[-1].chunk
    messages[-1] = pb.GenerateImageResponse(chunk=pb.ImageChunk(index=last.index, data=b"X" + last.data[1:]))
    with pytest.raises(ImageStreamError, match="image 1 has sha256"):
        collect_images_sync(messages)


def test_a_truncated_stream_is_refused() -> None:
    with pytest.raises(ImageStreamError, match="ended after"):
        collect_images_sync(honest()[:-1])


def test_bytes_beyond_the_described_size_are_refused() -> None:
    messages = [*honest(), pb.GenerateImageResponse(chunk=pb.ImageChunk(index=1, data=b"more"))]
    with pytest.raises(ImageStreamError, match="longer than"):
        collect_images_sync(messages)


def test_chunks_out_of_order_are_refused() -> None:
    messages = honest()
    with pytest.raises(ImageStreamError, match="out of order"):
        collect_images_sync([messages[0], messages[-1], *messages[1:-1]])


def test_bytes_before_the_metadata_are_refused() -> None:
    messages = honest()
    with pytest.raises(ImageStreamError, match="before its metadata"):
        collect_images_sync(messages[1:])


def test_descriptors_that_disagree_with_the_envelope_are_refused() -> None:
    messages = honest()
    messages[0].metadata.envelope.image_sha256[0] = "0" * 64
    with pytest.raises(ImageStreamError, match="envelope"):
        collect_images_sync(messages)


def test_an_announced_size_beyond_the_cap_is_refused_before_any_byte_is_buffered() -> None:
    messages = honest([b"\x89PNG small"])
    messages[0].metadata.images[0].size_bytes = 2**40
    with pytest.raises(ImageStreamError, match="size outside"):
        collect_images_sync(messages[:1])


def test_more_images_than_any_request_asks_for_are_refused() -> None:
    with pytest.raises(ImageStreamError, match="at most 4"):
        collect_images_sync(honest([b"\x89PNG %d" % i for i in range(5)]))
