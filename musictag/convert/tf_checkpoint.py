"""Read TensorFlow "Saver V2" checkpoints (``.index`` + ``.data-*``) with numpy alone.

Upstream taggers such as musicnn ship TF1 checkpoints; importing TensorFlow to read them drags in
its numpy and Python pins, which is what this project spares its users. The format is small:

- ``<prefix>.index`` is an SSTable (LevelDB's table format): data blocks of prefix-compressed
  key/value records, an index block pointing at them and a 48-byte footer ending in a magic number.
  The key ``""`` holds a ``BundleHeaderProto``; every other key is a tensor name whose value is a
  ``BundleEntryProto`` (dtype, shape, shard id, offset, size, masked CRC-32C).
- ``<prefix>.data-SSSSS-of-NNNNN`` holds the raw tensor bytes in the byte order the header names.

Blocks written by TensorFlow's tensor bundle are uncompressed; a compressed one is reported as an
error rather than guessed at. Each tensor read is checked against its CRC-32C, so a damaged
checkpoint fails loudly instead of yielding silently wrong weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..protobuf import ProtobufError, fields, varint

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_BLOCK_TRAILER_BYTES = 5  # compression type byte + CRC-32C of the block

#: TensorFlow's ``DataType`` enum values for the fixed-size types a model checkpoint holds.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"), 2: np.dtype("float64"), 3: np.dtype("int32"), 4: np.dtype("uint8"),
    5: np.dtype("int16"), 6: np.dtype("int8"), 9: np.dtype("int64"), 10: np.dtype("bool"),
    17: np.dtype("uint16"), 19: np.dtype("float16"), 22: np.dtype("uint32"),
    23: np.dtype("uint64"),
}


class CheckpointError(WeightsError):
    """The files are not a readable Saver V2 checkpoint; the message names the file and cause."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data shards (a decoded ``BundleEntryProto``)."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None


def _proto_fields(buffer: bytes) -> list[tuple[int, int | bytes]]:
    """The ``(field number, value)`` pairs of a protobuf message, in order."""
    try:
        return [(field.number, field.value) for field in fields(buffer)]
    except ProtobufError as error:
        raise CheckpointError(str(error)) from None


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    try:
        return varint(buffer, position)
    except ProtobufError:
        raise CheckpointError("truncated varint") from None


def _shape(buffer: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buffer):
        if number == 2:  # TensorShapeProto.dim
            sizes = [v for n, v in _proto_fields(value) if n == 1]
            dims.append(sizes[0] if sizes else 0)
        elif number == 3 and value:
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buffer: bytes) -> TensorEntry:
    values = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for number, value in _proto_fields(buffer):
        if number == 1:
            values["dtype"] = value
        elif number == 2:
            values["shape"] = _shape(value)
        elif number in (3, 4, 5):
            values[("shard_id", "offset", "size")[number - 3]] = value
        elif number == 6:
            values["crc32c"] = value
        elif number == 7:
            raise CheckpointError(f"tensor {name!r} is stored in slices (partitioned variable)")
    return TensorEntry(name, values["dtype"], values["shape"], values["shard_id"],
                       values["offset"], values["size"], values["crc32c"])


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    if offset + size + _BLOCK_TRAILER_BYTES > len(data):
        raise CheckpointError(f"{path}: block at {offset} runs past the end of the file")
    if data[offset + size] != 0:
        raise CheckpointError(f"{path}: compressed table blocks are not supported")
    return data[offset:offset + size]


def _block_records(block: bytes) -> list[tuple[bytes, bytes]]:
    """The key/value records of one table block (keys share prefixes with their predecessor)."""
    n_restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 * (n_restarts + 1)
    records, key, position = [], b"", 0
    while position < end:
        shared, position = _varint(block, position)
        unshared, position = _varint(block, position)
        value_length, position = _varint(block, position)
        key = key[:shared] + block[position:position + unshared]
        position += unshared
        records.append((key, block[position:position + value_length]))
        position += value_length
    return records


def _block_handle(buffer: bytes, position: int = 0) -> tuple[int, int, int]:
    offset, position = _varint(buffer, position)
    size, position = _varint(buffer, position)
    return offset, size, position


def read_index(index_path: str | os.PathLike) -> tuple[dict[str, TensorEntry], str, int]:
    """Every tensor entry of a ``.index`` file, with the byte order and number of data shards."""
    path = Path(index_path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror})") from None
    if len(data) < _FOOTER_BYTES or int.from_bytes(data[-8:], "little") != _TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (bad table magic)")
    footer = data[-_FOOTER_BYTES:]
    _, _, position = _block_handle(footer)  # the metaindex block is unused by tensor bundles
    index_offset, index_size, _ = _block_handle(footer, position)
    entries: dict[str, TensorEntry] = {}
    byte_order, n_shards = "little", 1
    for _, handle in _block_records(_block(data, index_offset, index_size, path)):
        offset, size, _ = _block_handle(handle)
        for key, value in _block_records(_block(data, offset, size, path)):
            if key == b"":
                header = dict(_proto_fields(value))
                n_shards = header.get(1, 1)
                byte_order = "big" if header.get(2, 0) == 1 else "little"
            else:
                name = key.decode("utf-8")
                entries[name] = _entry(name, value)
    return entries, byte_order, n_shards


def _crc32c_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; plain Python, fast enough for model-sized tensors."""
    table = _CRC_TABLE.tolist()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The rotated-and-offset CRC that LevelDB and TensorFlow store, so CRCs of CRCs stay useful."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class Checkpoint:
    """A Saver V2 checkpoint opened by its prefix: ``folder/model``, or ``folder/`` as in musicnn.

    ``names()`` lists every tensor; ``read(name)`` returns it as a numpy array of its stored dtype.
    """

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = str(prefix)
        self.entries, self._byte_order, self._n_shards = read_index(self.prefix + ".index")

    def names(self) -> list[str]:
        return sorted(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def _shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self._n_shards:05d}")

    def read(self, name: str) -> np.ndarray:
        if name not in self.entries:
            raise KeyError(f"{self.prefix}: no tensor {name!r}")
        entry = self.entries[name]
        dtype = _DTYPES.get(entry.dtype_code)
        if dtype is None:
            raise CheckpointError(f"{self.prefix}: tensor {name!r} has unsupported dtype code "
                                  f"{entry.dtype_code}")
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if expected != entry.size:
            raise CheckpointError(f"{self.prefix}: tensor {name!r} holds {entry.size} bytes, "
                                  f"its shape {list(entry.shape)} needs {expected}")
        shard = self._shard_path(entry.shard_id)
        try:
            with open(shard, "rb") as handle:
                handle.seek(entry.offset)
                raw = handle.read(entry.size)
        except OSError as error:
            raise CheckpointError(f"{shard}: cannot read ({error.strerror})") from None
        if len(raw) != entry.size:
            raise CheckpointError(f"{shard}: truncated at tensor {name!r}")
        if entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise CheckpointError(f"{shard}: tensor {name!r} fails its CRC-32C check")
        order = "<" if self._byte_order == "little" else ">"
        array = np.frombuffer(raw, dtype=dtype.newbyteorder(order)).reshape(entry.shape)
        return array.astype(dtype.newbyteorder("="), copy=True)
