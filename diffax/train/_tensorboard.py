"""TensorBoard event files (scalars and PNG images) through tensorboardX.

:class:`SummaryWriter` writes with ``tensorboardX.FileWriter`` (its TFRecord framing, CRCs and
``Event`` protocol buffers); all the scalars of one log step go into one event.
:func:`read_events` reads a file back with tensorboardX's ``Event`` message, checking every
record's CRC, for tests and for looking at a run without TensorBoard.
"""

from __future__ import annotations

import os
import struct

__all__ = ["SummaryWriter", "read_events"]


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
        from tensorboardX.writer import FileWriter

        logdir = os.fspath(logdir)
        os.makedirs(logdir, exist_ok=True)
        before = set(os.listdir(logdir))
        self._writer = FileWriter(logdir, filename_suffix=".diffax")
        self._writer.flush()
        new = sorted(set(os.listdir(logdir)) - before)
        self.path = os.path.join(logdir, new[-1]) if new else ""

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Writes several scalars at ``step`` as one event."""
        from tensorboardX.proto.summary_pb2 import Summary

        self._writer.add_summary(Summary(value=[
            Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar."""
        self.scalars({tag: value}, step)

    def image(self, tag: str, png: bytes, *, height: int, width: int, channels: int,
              step: int) -> None:
        """Writes an already PNG-encoded image."""
        from tensorboardX.proto.summary_pb2 import Summary

        image = Summary.Image(height=height, width=width, colorspace=channels,
                              encoded_image_string=png)
        self._writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: str | os.PathLike) -> list[dict]:
    """Parses an event file, checking every record's CRC (tensorboardX's ``masked_crc32c``)
    and decoding it with tensorboardX's ``Event`` message.

    Returns one dict per event: ``step``, ``wall_time``, ``scalars`` (tag -> value) and
    ``images`` (tag -> ``(height, width, channels, png bytes)``).
    """
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    with open(path, "rb") as f:
        data = f.read()
    pos, events = 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked_crc32c(header):
            raise ValueError(f"{path}: bad length CRC at byte {pos}")
        record = data[pos + 12:pos + 12 + length]
        if struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] != masked_crc32c(
                record):
            raise ValueError(f"{path}: bad data CRC at byte {pos}")
        pos += 16 + length
        e = Event.FromString(record)
        event = {"step": int(e.step), "wall_time": float(e.wall_time), "scalars": {},
                 "images": {}}
        for v in e.summary.value:
            if v.HasField("simple_value"):
                event["scalars"][v.tag] = float(v.simple_value)
            if v.HasField("image"):
                event["images"][v.tag] = (v.image.height, v.image.width, v.image.colorspace,
                                          v.image.encoded_image_string)
        events.append(event)
    return events
