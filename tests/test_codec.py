"""The data-only wire format rejects anything malformed before allocating."""

import json
import socket
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.sandbox import protocol as codec


def roundtrip(value):
    bufs = []
    node = codec.encode_value(value, bufs)
    return codec.decode_value(json.loads(json.dumps(node)), bufs)


def test_values_round_trip():
    t = torch.randn(2, 3, dtype=torch.float64)
    out = roundtrip({"a": (t, [1, 2.5, None, True, "x"]), "mask": torch.ones(2, 2, dtype=torch.bool)})
    assert torch.equal(out["a"][0], t) and out["a"][0].dtype == torch.float64
    assert out["a"][1] == [1, 2.5, None, True, "x"]
    assert out["mask"].dtype == torch.bool
    assert roundtrip(float("-inf")) == float("-inf")


def test_foreign_values_are_described_not_rebuilt():
    arr = roundtrip(np.arange(3.0))
    assert isinstance(arr, codec.Foreign) and arr.type_name == "numpy.ndarray"
    other = roundtrip(object())
    assert isinstance(other, codec.Foreign) and other.type_name == "builtins.object"
    bf16 = roundtrip(torch.ones(2, dtype=torch.bfloat16))
    assert isinstance(bf16, codec.Foreign) and "bfloat16" in bf16.type_name


@pytest.mark.parametrize("node,bufs", [
    ({"t": "tensor", "dtype": "float64", "shape": [3], "buf": 0}, [b"\0" * 16]),  # bytes != shape
    ({"t": "tensor", "dtype": "float64", "shape": [-1], "buf": 0}, [b""]),
    ({"t": "tensor", "dtype": "float64", "shape": [1] * 9, "buf": 0}, [b"\0" * 8]),
    ({"t": "tensor", "dtype": "float64", "shape": [1], "buf": 5}, [b"\0" * 8]),
    ({"t": "tensor", "dtype": "float64", "shape": [True], "buf": 0}, [b"\0" * 8]),
    ({"t": "pickle", "v": "gASV"}, []),
    ({"t": "int", "v": "1"}, []),
    ("not a dict", []),
])
def test_malformed_values_raise_protocol_error(node, bufs):
    with pytest.raises(codec.ProtocolError):
        codec.decode_value(node, bufs)


def _pair():
    a, b = socket.socketpair()
    return a, b


def test_oversized_frames_are_refused_before_reading_them():
    a, b = _pair()
    header = json.dumps({"bufs": [1 << 40]}).encode()
    a.sendall(struct.pack(">4sI", codec.MAGIC, len(header)) + header)
    with pytest.raises(codec.ProtocolError, match="over the"):
        codec.recv(b, max_bytes=1 << 20)


def test_bad_magic_and_bad_json():
    a, b = _pair()
    a.sendall(struct.pack(">4sI", b"XXXX", 2) + b"{}")
    with pytest.raises(codec.ProtocolError):
        codec.recv(b)
    a, b = _pair()
    a.sendall(struct.pack(">4sI", codec.MAGIC, 3) + b"{x}")
    with pytest.raises(codec.ProtocolError):
        codec.recv(b)


def test_closed_peer_and_timeout():
    a, b = _pair()
    with pytest.raises(codec.Timeout):
        codec.recv(b, deadline=0.0)
    a.close()
    with pytest.raises(codec.PeerClosed):
        codec.recv(b)


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_other_errors(data):
    a, b = _pair()
    a.sendall(data)
    a.close()
    try:
        codec.recv(b, max_bytes=1 << 16)
    except (codec.ProtocolError, codec.PeerClosed):
        pass


@settings(deadline=None, max_examples=200)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2 ** 62) + 1, 2 ** 62 - 1) | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=10))
def test_json_values_round_trip(value):
    out = roundtrip(value)
    assert json.dumps(out, default=str, allow_nan=True) == json.dumps(value, default=str, allow_nan=True)
