#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into seeds/TARGET/ (valid conversations, so the
fuzzer starts deep in the engine). Run from anywhere: python3 fuzz/make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def rec(ty, rid, content=b"", padding=0):
    return struct.pack(">BBHHBB", 1, ty, rid, len(content), padding, 0) + content + b"\0" * padding


def begin(rid, role=1, keep=True):
    return rec(1, rid, struct.pack(">HB5x", role, 1 if keep else 0))


def nvlen(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def nv(pairs):
    return b"".join(nvlen(len(n)) + nvlen(len(v)) + n + v for n, v in pairs)


NGINX = [
    (b"SCRIPT_FILENAME", b"/srv/www/index.php"),
    (b"QUERY_STRING", b"a=1&b=2"),
    (b"REQUEST_METHOD", b"POST"),
    (b"CONTENT_LENGTH", b"5"),
    (b"REQUEST_URI", b"/index.php?a=1&b=2"),
    (b"HTTP_HOST", b"localhost:8080"),
    (b"LONG", b"x" * 130),
]


def request(rid, keep=True, pairs=NGINX, body=b"hello", role=1):
    out = begin(rid, role, keep) + rec(4, rid, nv(pairs)) + rec(4, rid)
    if body:
        out += rec(5, rid, body)
    return out + rec(5, rid)


def query(names):
    return rec(9, 0, nv([(n, b"") for n in names]))


conversations = {
    "nginx": request(1, keep=False),
    "keepalive": request(1) + request(1) + request(65535, keep=False),
    "keepalive_ids": request(1) + request(2) + rec(9, 0, nv([(b"FCGI_MAX_REQS", b"")])) + request(3, keep=False),
    "split_padded": begin(3) + rec(4, 3, nv(NGINX)[:7], 5) + rec(4, 3, nv(NGINX)[7:], 255)
    + rec(4, 3, b"", 1) + rec(5, 3, b"he", 3) + query([b"FCGI_MAX_CONNS"]) + rec(5, 3, b"llo") + rec(5, 3),
    "get_values": query([b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS", b"X"]) + rec(200, 0, b"x"),
    "filter": begin(2, 3, False) + rec(4, 2, nv([(b"FCGI_DATA_LENGTH", b"4")])) + rec(4, 2)
    + rec(5, 2, b"in") + rec(5, 2) + rec(8, 2, b"da") + rec(8, 2, b"ta") + rec(8, 2),
    "abort": begin(1) + rec(4, 1) + rec(5, 1, b"part") + rec(2, 1) + request(2, keep=False),
    "mux": begin(5) + begin(6) + begin(7) + rec(4, 6) + rec(4, 5) + rec(5, 6, b"six") + rec(5, 5, b"five")
    + rec(5, 5) + rec(5, 6),
    "unknown_role": begin(1, 0) + begin(2, 2) + request(3),
}

# connection: setup byte, count byte (1 size), size byte, stream.
setups = [(0x00, 0x00, 0x00), (0x09, 0x04, 0x07), (0x4A, 0x08, 0x01), (0xAB, 0x00, 0x00), (0x2C, 0x04, 0x0D)]
os.makedirs(os.path.join(HERE, "seeds", "connection"), exist_ok=True)
for name, stream in conversations.items():
    for i, (setup, count, size) in enumerate(setups):
        with open(os.path.join(HERE, "seeds", "connection", f"{name}-{i}"), "wb") as f:
            f.write(bytes([setup, count, size]) + stream)

os.makedirs(os.path.join(HERE, "seeds", "nv_decoder"), exist_ok=True)
for i, pairs in enumerate([NGINX, [(b"", b"")], [(b"a" * 127, b"b" * 128)]]):
    with open(os.path.join(HERE, "seeds", "nv_decoder", f"pairs-{i}"), "wb") as f:
        f.write(bytes([0x31]) + nv(pairs))

os.makedirs(os.path.join(HERE, "seeds", "record_header"), exist_ok=True)
with open(os.path.join(HERE, "seeds", "record_header", "records"), "wb") as f:
    f.write(request(1))
