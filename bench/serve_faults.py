#!/usr/bin/env python3
"""Fault clients for bench/serve.sh (stdlib only): for SECONDS, in a loop, post bad bodies (text,
a truncated gzip scan, a broken zip, an empty body), open uploads and disconnect half-way, and
keep one slow client that trickles its body; print one JSON line with the status counts.

    python3 bench/serve_faults.py PORT SCAN SECONDS
"""
import json
import socket
import sys
import threading
import time
from collections import Counter


def exchange(port, body, declared=None, close_after=None, trickle=None):
    """Sends one POST; returns the status, or a word for what happened."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        length = len(body) if declared is None else declared
        s.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"Content-Length: {length}\r\n\r\n".encode())
        if close_after is not None:
            s.sendall(body[:close_after])
            return "disconnected"
        if trickle is not None:
            for i in range(0, len(body), 1):
                try:
                    s.sendall(body[i:i + 1])
                except OSError:
                    break
                time.sleep(trickle)
                if i > 64:
                    break
        else:
            s.sendall(body)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        try:
            return int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return "no answer"


def main(port, scan, seconds):
    port, seconds = int(port), float(seconds)
    good = open(scan, "rb").read()
    bad = [b"hello", good[: len(good) // 2], b"PK\x03\x04garbage", b"", b"\x1f\x8bnot gzip"]
    counts = Counter()
    slow = Counter()
    stop = time.time() + seconds

    def slow_client():
        while time.time() < stop:
            slow[f"slow:{exchange(port, good, trickle=0.2)}"] += 1

    thread = threading.Thread(target=slow_client)
    thread.start()
    i = 0
    while time.time() < stop:
        body = bad[i % len(bad)]
        counts[f"bad:{exchange(port, body)}"] += 1
        counts[f"cut:{exchange(port, good, close_after=len(good) // 3)}"] += 1
        i += 1
    thread.join()
    counts.update(slow)
    print(json.dumps({"bench": "serve_faults", "seconds": seconds, "answers": dict(sorted(counts.items()))}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
