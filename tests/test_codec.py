"""The data-only wire format rejects anything malformed before allocating."""

import json
import socket
import struct
import time

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
    (["T", "float64", [3], 0], [b"\0" * 16]),  # bytes != shape
    (["T", "float64", [-1], 0], [b""]),
    (["T", "float64", [1] * 9, 0], [b"\0" * 8]),
    (["T", "float64", [1], 5], [b"\0" * 8]),
    (["T", "float64", [True], 0], [b"\0" * 8]),
    (["pickle", "gASV"], []),
    (["f", "1"], []),
    ("not a node", []),
    ({"t": "tensor", "dtype": "float64", "shape": [1], "buf": 0}, [b"\0" * 8]),  # the old wire format
    (["T", "float64", [0] + [2 ** 31 - 1] * 4, 0], [b""]),  # no bytes, sizes no array can have
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


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_frame_with_a_number_json_does_not_have_is_refused(constant):
    """Neither side writes NaN or Infinity (a float that is not finite travels as
    ["f", ...]); a hand-made frame with one is malformed, before any bound it
    would slip through is computed."""
    a, b = _pair()
    body = b'{"bufs": [], "kind": "upcall", "spec": {"args": [' + constant + b']}}'
    a.sendall(struct.pack(">4sI", codec.MAGIC, len(body)) + body)
    with pytest.raises(codec.ProtocolError):
        codec.recv(b)


def test_bad_magic_and_bad_json():
    a, b = _pair()
    a.sendall(struct.pack(">4sI", b"XXXX", 2) + b"{}")
    with pytest.raises(codec.ProtocolError):
        codec.recv(b)
    a, b = _pair()
    a.sendall(struct.pack(">4sI", codec.MAGIC, 3) + b"{x}")
    with pytest.raises(codec.ProtocolError):
        codec.recv(b)
    a, b = _pair()  # nested deeper than the JSON decoder's recursion
    body = b'{"bufs": [], "value": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    a.sendall(struct.pack(">4sI", codec.MAGIC, len(body)) + body)
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


# --------------------------------------------------------------------------- exact bytes, hand-written

def test_a_frame_is_magic_length_json_then_the_raw_buffers():
    frame = codec.pack({"op": codec.Op.CALL}, [b"abc", b""])
    body = b'{"op": "call", "bufs": [3, 0]}'  # the enum travels as its plain string
    assert frame == b"AKv1" + len(body).to_bytes(4, "big") + body + b"abc"


def test_a_tensor_is_described_and_its_bytes_shipped_as_they_are():
    bufs = []
    node = codec.encode_value(torch.tensor([[1.0, -2.0]], dtype=torch.float32), bufs)
    assert node == ["T", "float32", [1, 2], 0]
    assert bufs == [struct.pack("=2f", 1.0, -2.0)]
    node = codec.encode_value(torch.tensor([True, False]), bufs)
    assert node == ["T", "bool", [2], 1] and bufs[1] == b"\x01\x00"


def test_hand_written_bytes_decode_to_a_fresh_writable_tensor():
    data = struct.pack("=4q", 1, 2, 3, -4)
    out = codec.decode_value(["T", "int64", [2, 2], 0], [data])
    assert out.dtype == torch.int64 and out.tolist() == [[1, 2], [3, -4]]
    out += 1  # its own memory: writable, and the received bytes stay as they were
    assert out.tolist() == [[2, 3], [4, -3]] and data == struct.pack("=4q", 1, 2, 3, -4)
    f16 = codec.decode_value(["T", "float16", [], 0], [struct.pack("=e", 0.5)])
    assert f16.dtype == torch.float16 and f16.shape == () and float(f16) == 0.5


def test_arrays_decode_as_numpy_where_asked_and_a_students_ndarray_stays_foreign():
    data = struct.pack("=2d", 0.25, 8.0)
    arr = codec.decode_value(["T", "float64", [2], 0], [data], as_torch=False)
    assert isinstance(arr, np.ndarray) and arr.tolist() == [0.25, 8.0]
    foreign = codec.decode_value(["A", "float64", [2], 0], [data])
    assert isinstance(foreign, codec.Foreign) and foreign.type_name == "numpy.ndarray"
    assert foreign.array.tolist() == [0.25, 8.0]


def test_an_unshippable_dtype_is_described_without_bytes():
    bufs = []
    node = codec.encode_value(torch.ones(2, dtype=torch.complex64), bufs)
    assert node == ["T", "complex64", [2], None] and bufs == []
    assert codec.decode_value(node, bufs).type_name == "torch tensor of dtype complex64"


def test_scalars_and_their_edge_cases():
    assert codec.encode_value(True, []) is True  # a bool stays a bool, never 1
    assert codec.encode_value(2 ** 62, []) == ["o", "int"]
    assert codec.encode_value(2 ** 62 - 1, []) == 2 ** 62 - 1
    assert codec.encode_value(float("nan"), []) == ["f", "nan"]
    assert codec.encode_value(float("inf"), []) == ["f", "inf"]
    assert codec.encode_value(float("-inf"), []) == ["f", "-inf"]
    assert codec.decode_value(["f", "-inf"], []) == float("-inf")
    with pytest.raises(codec.ProtocolError):
        codec.decode_value(["f", "1e400"], [])  # only the three names travel as strings
    with pytest.raises(codec.ProtocolError):
        codec.decode_value(["i", "1"], [])


def test_sizes_are_cut_on_the_way_out_and_refused_on_the_way_in():
    assert codec.encode_value("x" * 5000, []) == ["s", "x" * 4000]
    assert len(codec.encode_value(list(range(300)), [])) == 1 + 256
    assert list(codec.encode_value({"k" * 300: 1}, [])[1]) == ["k" * 200]
    nested: list = []
    for _ in range(20):
        nested = [nested]
    node = codec.encode_value(nested, [])
    for _ in range(13):  # depth 0 to 12 are kept
        node = node[1]
    assert node == ["o", "nested too deeply"]
    with pytest.raises(codec.ProtocolError, match="malformed sequence"):
        codec.decode_value(["l"] + [None] * 257, [])
    deep = None
    for _ in range(13):
        deep = ["l", deep]
    codec.decode_value(deep, [])  # depth 0 to 12: kept
    deep = ["l", deep]
    with pytest.raises(codec.ProtocolError, match="malformed value"):
        codec.decode_value(deep, [])
    assert codec.decode_value(["s", "y" * 5000], []) == "y" * 4000


@pytest.mark.parametrize("bufs", [{"a": 1}, [-1], [True], ["3"], [0] * (4 * codec.MAX_ITEMS + 1)])
def test_a_bad_buffer_table_is_refused(bufs):
    a, b = _pair()
    body = json.dumps({"bufs": bufs}).encode()
    a.sendall(struct.pack(">4sI", codec.MAGIC, len(body)) + body)
    with pytest.raises(codec.ProtocolError, match="bad buffer table"):
        codec.recv(b)


def test_a_header_over_the_json_limit_is_refused_before_it_is_read():
    a, b = _pair()
    a.sendall(struct.pack(">4sI", codec.MAGIC, codec.MAX_JSON + 1))  # and nothing more
    with pytest.raises(codec.ProtocolError, match="bad frame header"):
        codec.recv(b, deadline=time.monotonic() + 5)


def test_frames_round_trip_over_a_socket_in_order():
    a, b = _pair()
    codec.send(a, {"kind": codec.Kind.RESULT, "n": 1}, [b"\x00" * 10])
    codec.send(a, {"kind": codec.Kind.ERROR, "error": codec.Fault.NOT_IMPLEMENTED}, [])
    assert codec.recv(b) == ({"kind": "result", "n": 1, "bufs": [10]}, [b"\x00" * 10])
    assert codec.recv(b) == ({"kind": "error", "error": "not_implemented", "bufs": []}, [])


def test_a_peer_that_stops_reading_cannot_hold_the_sender_past_its_deadline():
    a, b = _pair()
    start = time.monotonic()
    with pytest.raises(codec.Timeout):
        codec.send(a, {}, [b"\x00" * (64 << 20)], deadline=time.monotonic() + 0.3)
    assert time.monotonic() - start < 5


def test_a_frame_cut_short_times_out_at_the_deadline():
    a, b = _pair()
    a.sendall(codec.pack({}, [b"abcdef"])[:-2])
    with pytest.raises(codec.Timeout):
        codec.recv(b, deadline=time.monotonic() + 0.2)


def test_the_wire_names_of_the_messages():
    """Both sides of the channel speak these strings; renaming one breaks an older child."""
    assert [m.value for m in codec.Op] == ["hello", "import", "call", "module", "start", "gradient"]
    assert [m.value for m in codec.Kind] == ["ready", "warm", "result", "error", "upcall", "upcall_result",
                                             "upcall_error"]
    assert codec.Fault("not_implemented") is codec.Fault.NOT_IMPLEMENTED and len(codec.Fault) == 9
    assert [m.value for m in codec.Limit] == ["time", "memory", "output", "crash", "protocol"]


def test_a_word_of_the_protocol_reads_as_its_value():
    """Messages are built from these words: str() and f-strings give the value on
    every Python (a plain ``str, Enum`` gives "Fault.MISSING_FILE" on 3.11)."""
    for enum in (codec.Op, codec.Kind, codec.Fault, codec.Limit):
        for member in enum:
            assert str(member) == f"{member}" == member.value
    assert {"missing_file": 1}.get(codec.Fault.MISSING_FILE) == 1


def test_a_childs_word_on_its_exceptions_classes_keeps_built_in_names_only():
    """A child says which built-in classes its exception belongs to (a student's
    ValueError subclass is a ValueError); the grader keeps only real names of
    built-in exception classes, from a list, and no more than 16 of them."""
    from attnkit.sandbox.contract import ChildFault, builtin_names

    assert builtin_names(["HeadsError", "ValueError", "Exception", "BaseException", "object"]) == (
        "ValueError", "Exception", "BaseException")
    assert builtin_names(["print", "open", "__import__", "int", 3, None, ["ValueError"]]) == ()
    assert builtin_names("ValueError") == () and builtin_names({"ValueError": 1}) == ()
    assert builtin_names(["TypeError"] * 40) == ("TypeError",) * 16
    assert ChildFault("exception", "HeadsError: no", "", ["HeadsError", "ValueError"]).family == ("ValueError",)


def test_a_buffer_is_read_once_and_keys_are_as_long_as_the_encoder_writes_them():
    """The frame's byte bounds count its buffers, so a description may not name
    one buffer twice: 200 names of one 8 MiB buffer made the grader allocate
    1.6 GB (attack review). Keys longer than the encoder writes are forged too."""
    big = np.zeros(1 << 10, dtype=np.float64).tobytes()
    one = ["T", "float64", [1 << 10], 0]
    assert codec.decode_value(["l", one], [big])[0].shape == (1 << 10,)
    for node in (["l", one, one], ["d", {"a": one, "b": one}], ["l", ["l", one], ["t", one]]):
        with pytest.raises(codec.ProtocolError, match="twice"):
            codec.decode_value(node, [big])
    used: set = set()  # one frame's parts, decoded apart, share the rule
    codec.decode_value(["l", one], [big], used=used)
    with pytest.raises(codec.ProtocolError, match="twice"):
        codec.decode_value(["l", one], [big], used=used)
    # what the encoder makes always decodes: the same tensor twice is two buffers
    t = torch.arange(6.0)
    bufs: list = []
    node = codec.encode_value({"x": t, "y": [t, t], "k" * 500: 1}, bufs)
    back = codec.decode_value(node, bufs)
    assert len(bufs) == 3 and torch.equal(back["y"][1], t) and "k" * codec.MAX_KEY in back
    with pytest.raises(codec.ProtocolError, match="key"):
        codec.decode_value(["d", {"k" * (codec.MAX_KEY + 1): 1}], [])
