#!/usr/bin/python3
"""netem in user space, for kernels without sch_netem (this machine's has none).

    /usr/bin/python3 tests/clients/impair.py TUN PROFILE

Attaches to the TUN device TUN (made with `ip tuntap add dev TUN mode tun` in a
router namespace of the test, with policy routing sending one direction of traffic
into it) and writes every packet it reads back into it, after netem's treatment:

- `loss` percent dropped;
- `duplicate` percent sent twice;
- `reorder` percent sent at once, the rest after `delay_ms` ± `jitter_ms` (uniform),
  in order of their send time, so jitter reorders too, as netem's tfifo does;
- `blackout`: everything dropped.

PROFILE is a JSON file with those keys, re-read whenever it changes, so a test
switches between profiles while packets flow. On SIGTERM it prints one JSON object of
counts (in, dropped, duplicated, reordered, out) and exits.
"""
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    dev, profile_path = sys.argv[1], sys.argv[2]
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    counts = {"in": 0, "dropped": 0, "duplicated": 0, "reordered": 0, "out": 0}
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    profile, mtime = {}, None
    heap, n = [], 0
    print("[impair] ready", file=sys.stderr, flush=True)
    while running[0]:
        try:
            m = os.stat(profile_path).st_mtime_ns
            if m != mtime:
                with open(profile_path) as f:
                    profile = json.load(f)
                mtime = m
        except (OSError, ValueError):
            pass
        now = time.monotonic()
        wait = 0.05 if not heap else max(0.0, min(0.05, heap[0][0] - now))
        try:
            readable, _, _ = select.select([fd], [], [], wait)
        except InterruptedError:
            continue
        if readable:
            pkt = os.read(fd, 65535)
            counts["in"] += 1
            now = time.monotonic()
            if profile.get("blackout") or random.random() * 100 < profile.get("loss", 0):
                counts["dropped"] += 1
            else:
                copies = 1
                if random.random() * 100 < profile.get("duplicate", 0):
                    copies = 2
                    counts["duplicated"] += 1
                for _ in range(copies):
                    if random.random() * 100 < profile.get("reorder", 0):
                        at = now
                        counts["reordered"] += 1
                    else:
                        d = profile.get("delay_ms", 0) + random.uniform(
                            -profile.get("jitter_ms", 0), profile.get("jitter_ms", 0)
                        )
                        at = now + max(0.0, d) / 1000
                    n += 1
                    heapq.heappush(heap, (at, n, pkt))
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, pkt = heapq.heappop(heap)
            try:
                os.write(fd, pkt)
                counts["out"] += 1
            except OSError:
                counts["dropped"] += 1
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
