"""A dependency-free TensorBoard event-file writer (scalars and PNG images).

TensorBoard reads TFRecord files of ``Event`` protocol buffers. Writing the few message types
needed here by hand (about a hundred lines) keeps tensorflow, tensorboardX and clu out of the
runtime dependencies; the format is stable (``brain.Event:2``).
"""

from __future__ import annotations

import os
import socket
import struct
import time

__all__ = ["SummaryWriter", "read_events", "crc32c"]


def _make_crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord framing.

    Example:
      >>> hex(crc32c(b"123456789"))
      '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _event(step: int, *, summary: bytes | None = None, file_version: str | None = None,
           wall_time: float | None = None) -> bytes:
    msg = _key(1, 1) + struct.pack("<d", time.time() if wall_time is None else wall_time)
    msg += _key(2, 0) + _varint(int(step))
    if file_version is not None:
        msg += _bytes_field(3, file_version.encode())
    if summary is not None:
        msg += _bytes_field(5, summary)
    return msg


def _scalar_value(tag: str, value: float) -> bytes:
    return _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(value))


def _image_value(tag: str, png: bytes, height: int, width: int, channels: int) -> bytes:
    image = (_key(1, 0) + _varint(height) + _key(2, 0) + _varint(width)
             + _key(3, 0) + _varint(channels) + _bytes_field(4, png))
    return _bytes_field(1, tag.encode()) + _bytes_field(4, image)


class SummaryWriter:
    """Appends scalar and image summaries to an event file in ``logdir``.

    Example:
      >>> import tempfile
      >>> logdir = tempfile.mkdtemp()
      >>> with SummaryWriter(logdir) as w:
      ...     w.scalar("loss", 0.5, step=1)
      >>> [(e["step"], e["scalars"]) for e in read_events(w.path) if e["scalars"]]
      [(1, {'loss': 0.5})]
    """

    def __init__(self, logdir: str | os.PathLike):
        os.makedirs(logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}."
                f"{os.getpid()}.diffax")
        self.path = os.path.join(os.fspath(logdir), name)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._write(_event(0, file_version="brain.Event:2"))
        self.flush()

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._file.write(header + struct.pack("<I", _masked_crc(header)) + record
                         + struct.pack("<I", _masked_crc(record)))

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Writes several scalars at ``step`` as one event."""
        summary = b"".join(_bytes_field(1, _scalar_value(k, v)) for k, v in values.items())
        self._write(_event(step, summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar."""
        self.scalars({tag: value}, step)

    def image(self, tag: str, png: bytes, *, height: int, width: int, channels: int,
              step: int) -> None:
        """Writes an already PNG-encoded image."""
        self._write(_event(step, summary=_bytes_field(
            1, _image_value(tag, png, height, width, channels))))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- a minimal reader, for tests and for checking files without tensorboard ------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _fields(buf: bytes):
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, value


def read_events(path: str | os.PathLike) -> list[dict]:
    """Parses an event file written by :class:`SummaryWriter`, checking every CRC.

    Returns one dict per event: ``step``, ``wall_time``, ``scalars`` (tag -> value) and
    ``images`` (tag -> ``(height, width, channels, png bytes)``).
    """
    with open(path, "rb") as f:
        data = f.read()
    pos, events = 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != _masked_crc(header):
            raise ValueError(f"{path}: bad length CRC at byte {pos}")
        record = data[pos + 12:pos + 12 + length]
        if struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] != _masked_crc(
                record):
            raise ValueError(f"{path}: bad data CRC at byte {pos}")
        pos += 16 + length
        event = {"step": 0, "wall_time": 0.0, "scalars": {}, "images": {}}
        for field, value in _fields(record):
            if field == 1:
                event["wall_time"] = struct.unpack("<d", value)[0]
            elif field == 2:
                event["step"] = value
            elif field == 5:
                for _, v in _fields(value):
                    parts = dict(_fields(v))
                    tag = parts[1].decode()
                    if 2 in parts:
                        event["scalars"][tag] = struct.unpack("<f", parts[2])[0]
                    if 4 in parts:
                        img = dict(_fields(parts[4]))
                        event["images"][tag] = (img[1], img[2], img[3], img[4])
        events.append(event)
    return events
