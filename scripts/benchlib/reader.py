"""Child process that reads files and reports what it did as one JSON line.

  reader.py '{"mode": "read", "paths": [...], "cap": 30, "go": T, "bufsize": 1048576}'
      reads every path to its end with `bufsize` reads, starting at monotonic
      time T (so parallel readers start together), stopping after `cap`
      seconds; prints {"bytes", "start", "end", "capped", "files_done"}
  reader.py '{"mode": "ttfb", "path": P}'
      stat (not timed), then times open + a 1-byte read: {"seconds", "byte"}

A child, not a thread: a read stuck in a FUSE filesystem cannot block the
harness, and readers in parallel do not share a GIL.
"""

import json
import os
import sys
import time


def read(spec):
    paths, cap = spec["paths"], float(spec["cap"])
    buf = bytearray(int(spec.get("bufsize", 1 << 20)))
    mv = memoryview(buf)
    go = spec.get("go")
    if go is not None:
        while time.monotonic() < go:
            time.sleep(min(0.01, max(0.0, go - time.monotonic())))
    start = time.monotonic()
    total, capped, done = 0, False, 0
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            while True:
                n = os.readv(fd, [mv])
                if n <= 0:
                    break
                total += n
                if time.monotonic() - start > cap:
                    capped = True
                    break
        finally:
            os.close(fd)
        if capped:
            break
        done += 1
    end = time.monotonic()
    return {"bytes": total, "start": start, "end": end, "capped": capped, "files_done": done}


def ttfb(spec):
    p = spec["path"]
    os.stat(p)
    t0 = time.monotonic()
    fd = os.open(p, os.O_RDONLY)
    try:
        b = os.read(fd, 1)
    finally:
        t1 = time.monotonic()
        os.close(fd)
    return {"seconds": t1 - t0, "byte": len(b)}


def main():
    spec = json.loads(sys.argv[1])
    try:
        out = {"read": read, "ttfb": ttfb}[spec["mode"]](spec)
    except OSError as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
