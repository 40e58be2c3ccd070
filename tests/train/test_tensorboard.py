"""TensorBoard events (tensorboardX): what diffax writes reads back through tensorboardX's
own ``Event`` protocol buffer, every record's CRC checked."""

import struct

import numpy as np
import pytest

from diffax.train._tensorboard import SummaryWriter, read_events


def test_events_read_back_with_tensorboardx(tmp_path):
    from tensorboardX.proto.event_pb2 import Event

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    with SummaryWriter(tmp_path) as w:
        w.scalars({"loss": 0.25, "grad_norm": 1.5}, step=10)
        w.image("samples", png, height=3, width=4, channels=1, step=10)
        w.scalar("loss", 0.125, step=20)
    events = read_events(w.path)
    # The file starts with tensorboardX's version event; each call is one event.
    raw = open(w.path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert Event.FromString(raw[12:12 + n]).file_version == "brain.Event:2"
    assert [(e["step"], e["scalars"]) for e in events if e["scalars"]] == [
        (10, {"loss": 0.25, "grad_norm": 1.5}), (20, {"loss": 0.125})]
    (image,) = [e["images"]["samples"] for e in events if e["images"]]
    assert image == (3, 4, 1, png)
    assert all(e["wall_time"] > 1.6e9 for e in events)


def test_a_corrupt_record_is_refused(tmp_path):
    with SummaryWriter(tmp_path) as w:
        w.scalar("loss", 0.5, step=1)
    data = bytearray(open(w.path, "rb").read())
    data[-6] ^= 0xFF  # a byte of the last record's payload
    open(w.path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="bad data CRC"):
        read_events(w.path)


def test_float_values_are_stored_as_float32(tmp_path):
    with SummaryWriter(tmp_path) as w:
        w.scalar("x", 0.1, step=3)
    (value,) = [e["scalars"]["x"] for e in read_events(w.path) if e["scalars"]]
    assert value == float(np.float32(0.1))
