"""The protobuf wire format read without the protobuf package (nor onnx, nor TensorFlow).

Two files are read this way: an exported ONNX model, whose top-level fields the digest covers
(:mod:`musictag.backends.onnx_backend`), and a TensorFlow checkpoint's index
(:mod:`musictag.convert.tf_checkpoint`). Both need only varints and field boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import WeightsError


class ProtobufError(WeightsError):
    """Bytes that do not parse as a protobuf message: a truncated or foreign file."""


def varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    """The base-128 varint at ``position``, and the position after it."""
    value = shift = 0
    while position < len(data):
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise ProtobufError("truncated protobuf varint")


@dataclass(frozen=True)
class Field:
    """One field of a message: ``value`` is the integer of a varint or fixed-width field, or
    the payload of a length-delimited one; ``start:end`` is its whole encoding, key included."""

    number: int
    value: int | bytes | memoryview
    start: int
    end: int


def fields(data: bytes | memoryview) -> Iterator[Field]:
    """The fields of a message in order (groups, wire types 3 and 4, are refused)."""
    position = 0
    while position < len(data):
        start = position
        key, position = varint(data, position)
        wire_type = key & 7
        if wire_type == 0:
            value, position = varint(data, position)
        elif wire_type == 2:
            length, position = varint(data, position)
            value, position = data[position:position + length], position + length
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value = int.from_bytes(data[position:position + width], "little")
            position += width
        else:
            raise ProtobufError(f"unsupported protobuf wire type {wire_type}")
        if position > len(data):
            raise ProtobufError("truncated protobuf field")
        yield Field(key >> 3, value, start, position)
