#!/usr/bin/python3
"""bench/cache_client.py BASE_URL: GET BASE_URL/api/properties/{id} once for every id read from
stdin (one per line), over one keep-alive connection, to warm a response cache. Prints
`WARM n=.. ok=.. other=.. bytes=.. secs=..` (ok: 200 answers; bytes: body bytes of the 200s).
Exits 1 if any answer was not 200. Standard library only."""
import http.client
import sys
import time
import urllib.parse


def main():
    u = urllib.parse.urlsplit(sys.argv[1])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    n = ok = other = nbytes = 0
    t0 = time.monotonic()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        conn.request("GET", f"/api/properties/{int(line)}")
        r = conn.getresponse()
        body = r.read()
        n += 1
        if r.status == 200:
            ok += 1
            nbytes += len(body)
        else:
            other += 1
            if other <= 3:
                print(f"cache_client: id {line}: HTTP {r.status} {body[:200]!r}", file=sys.stderr)
    print(f"WARM n={n} ok={ok} other={other} bytes={nbytes} secs={time.monotonic() - t0:.2f}")
    sys.exit(1 if other else 0)


if __name__ == "__main__":
    main()
