#!/usr/bin/env python3
"""spec_client: a client written from src/PROTOCOL.md alone, with Python's ssl
(certificate mode), to check that the spec is enough. tests/t_spec.c runs it
in `make test` against `tokenspeed serve` (gen, pong, silent); by hand: run
it against a server on 127.0.0.1:PORT with the certificates of
`tokenspeed certs CERTDIR`.
usage: spec_client.py PORT CERTDIR MODE [SECS]
MODE gen:    HELLO, WELCOME, SUBMIT 8 tokens, read to DONE, print timings
MODE pong:   gen, then stay silent but answer PINGs for SECS seconds; print PINGs seen, open or not
MODE silent: gen, then read without answering; print when PINGs came and when the server closed
MODE hold:   HELLO/WELCOME, then hold the connection open and silent for SECS seconds (answering PINGs)
"""
import socket, ssl, struct, sys, time

MAGIC = 0x5354
HELLO, WELCOME, SUBMIT, TOKENS, DONE, ERROR, CANCEL, CREDIT, PING, PONG, STATS, GOAWAY = range(1, 13)

port, certdir, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
secs = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(certdir + "/ca.crt")
ctx.load_cert_chain(certdir + "/client.crt", certdir + "/client.key")
raw = socket.create_connection(("127.0.0.1", port))
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s = ctx.wrap_socket(raw, server_hostname="localhost")


def send(ftype, payload=b"", flags=0, rid=0):
    s.sendall(struct.pack("<IHBBII", len(payload), MAGIC, 1, ftype, flags, rid) + payload)


def recvn(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b


def frame():
    h = recvn(16)
    if h is None:
        return None
    length, magic, ver, ftype, flags, rid = struct.unpack("<IHBBII", h)
    assert magic == MAGIC
    p = recvn(length) if length else b""
    return ftype, flags, rid, p


def string(p, off):
    (n,) = struct.unpack_from("<I", p, off)
    return p[off + 4 : off + 4 + n].decode(), off + 4 + n


def answer_pings(secs):
    """Stays silent for secs seconds but answers every PING; returns how many.
    Exits 1 if the server closes the connection meanwhile."""
    s.settimeout(0.2)
    t0 = time.time()
    n_ping = 0
    while time.time() - t0 < secs:
        try:
            f = frame()
        except socket.timeout:
            continue
        if f is None:
            print("closed by the server after %.2f s" % (time.time() - t0))
            sys.exit(1)
        if f[0] == PING:
            n_ping += 1
            send(PONG, f[3])
    return n_ping


name = b"py-spec/0.1"
send(HELLO, struct.pack("<III", 1, 1, 65536) + struct.pack("<I", len(name)) + name)
ftype, flags, rid, p = frame()
assert ftype == WELCOME, ftype
if mode == "hold":  # also against the server before WELCOME grew: do not parse it
    p = None
w = struct.unpack_from("<15I", p) if p else ()
keys = ["version", "max_frame", "max_requests", "max_tokens", "vocab", "max_seq_len", "max_stop_ids",
        "max_stop_seqs", "max_stop_seq_bytes", "max_text_bytes", "max_logprobs", "initial_credit",
        "credit_timeout_ms", "ping_interval_ms", "idle_timeout_ms"]
W = dict(zip(keys, w))
if p:
    off = 60
    model, off = string(p, off)
    arch, off = string(p, off)
    ck, off = string(p, off)
    srv, off = string(p, off)
    assert off == len(p), (off, len(p))
    print("WELCOME", W, model, arch, srv)

if mode == "hold":
    n_ping = answer_pings(secs)
    print("held %.1f s, %d PINGs answered" % (secs, n_ping))
    sys.exit(0)

# SUBMIT: 8 tokens, greedy, IGNORE_EOS (flag bit 3), prompt [5, 6, 7]
prompt = [5, 6, 7]
sub = struct.pack("<II", 8, 1) + struct.pack("<f", 0.0) + struct.pack("<I", 0) + struct.pack("<fffff", 1.0, 0.0, 1.0, 0.0, 0.0)
sub += struct.pack("<QQI", 0, 0, 0) + struct.pack("<I", len(prompt)) + struct.pack("<%dI" % len(prompt), *prompt)
sub += struct.pack("<I", 0) + struct.pack("<I", 0) + struct.pack("<I", 0)  # no stop ids, empty prompt_text, no stop seqs
assert len(sub) == 60 + 12 + 12, len(sub)
t0 = time.time()
send(SUBMIT, sub, flags=1 << 3, rid=1)
ids = []
while True:
    ftype, flags, rid, p = frame()
    if ftype == TOKENS:
        (n,) = struct.unpack_from("<I", p)
        ids += list(struct.unpack_from("<%dI" % n, p, 4))
    elif ftype == DONE:
        finish, n_prompt, n_cached, n_gen = struct.unpack_from("<IIII", p)
        break
    elif ftype == ERROR:
        print("ERROR", struct.unpack_from("<I", p), p[8:])
        sys.exit(1)
    elif ftype == PING:
        send(PONG, p)
print("generated %s finish=%d n_generated=%d in %.3f s" % (ids, finish, n_gen, time.time() - t0))
assert len(ids) == 8 and n_gen == 8

t0 = time.time()
if mode == "pong":
    n_ping = answer_pings(secs)
    print("answered %d PINGs in %.1f s; still open" % (n_ping, secs))
elif mode == "silent":
    pings = []
    while True:
        f = frame()
        if f is None:
            break
        if f[0] == PING:
            pings.append(round(time.time() - t0, 3))
    print("PINGs at %s s, closed at %.3f s" % (pings, time.time() - t0))
