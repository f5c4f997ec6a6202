#!/usr/bin/python3
"""bench/recommend_data.py: the data and the client of bench/recommend.sh.

    recommend_data.py listings [--rows 100000] [--seed 1] [--data DIR] > listings.jsonl
    recommend_data.py client URL [--requests 2000] [--seed 7] [--repeat]

`listings`: N listings as JSON lines for `hearth import FILE --format json`, built the way
bench/gen_listings.py builds them (each demo CSV row mapped as hearth's importers map it, the
whole row kept as `features`), with price and size jittered by +-5 %, lot by +-10 %, position by
+-0.01 degree, source "ames" or "sacramento" (the markets of the price model, so every listing gets
an estimate), a commute time computed from the jittered position as the CSV importers do
(src/domain/import.c: commute_minutes), and a unique external_id "rec-<i>". Deterministic.

`client`: POSTs /api/recommendations with REQUESTS preference sets drawn from SEED (budgets,
bedrooms, amenities, commute limits, locations; every set distinct, so the answer cache never
answers one), one at a time on one keep-alive connection, and prints per-request latency
percentiles. --repeat: sends the first set REQUESTS times instead (the cached path). --writes K
--email E --password P: K rounds of a PATCH of one listing's price followed by one recommendation,
timing the recommendation (it waits for the snapshot's rebuild). Standard
library only.
"""
import argparse
import http.client
import json
import math
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_listings  # noqa: E402

CENTRES = {"ames": (42.0262, -93.6167), "sacramento": (38.5766, -121.4934)}
LOCATIONS = ["Ames", "Sacramento", "North Ames", "College Creek", "Old Town", "Edwards", "Somerset",
             "Elk Grove", "Roseville", "Citrus Heights", "CA 958", "IA", "Gilbert", "Sawyer", "Rancho Cordova",
             "Northridge", "Crawford", "Mitchell", "Folsom", "Antelope"]
AMENITIES = ["garage", "pool", "fireplace", "central air", "deck", "basement", "porch"]


class Jitter5(random.Random):
    """gen_listings draws price and size from U(0.85, 1.15): +-5 % here."""

    def uniform(self, a, b):
        if (a, b) == (0.85, 1.15):
            a, b = 0.95, 1.05
        return super().uniform(a, b)


def commute_minutes(lat, lon, clat, clon):
    r = 6371.0
    p1, p2 = math.radians(lat), math.radians(clat)
    dp, dl = p2 - p1, math.radians(clon - lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    km = 2 * r * math.asin(math.sqrt(h))
    return int(round(km * 1.3 / 40.0 * 60.0)) + 3


def listings(a):
    base = list(gen_listings.ames_rows(os.path.join(a.data, "ames.csv"))) + \
        list(gen_listings.sac_rows(os.path.join(a.data, "sacramento.csv")))
    if not base:
        sys.exit("no demo rows found in " + a.data)
    rnd = Jitter5(a.seed)
    out = sys.stdout
    for i in range(a.rows):
        kind, r, t = base[i % len(base)]
        p = gen_listings.listing(kind, r, t, i, rnd)
        p["source"] = kind
        p["external_id"] = "rec-%d" % i
        p["commute_time"] = min(600, commute_minutes(p["latitude"], p["longitude"], *CENTRES[kind]))
        out.write(json.dumps(p, separators=(",", ":")))
        out.write("\n")
    print("recommend_data: %d rows from %d demo rows (seed %d)" % (a.rows, len(base), a.seed), file=sys.stderr)


def preference_sets(n, seed):
    rnd = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        p = {}
        if rnd.random() < 0.85:
            p["budget"] = rnd.randrange(60, 600) * 1000 + rnd.choice([0, 500])
        if rnd.random() < 0.6:
            p["min_bedrooms"] = rnd.randint(1, 5)
        if rnd.random() < 0.5:
            p["max_commute_time"] = rnd.randint(5, 45)
        if rnd.random() < 0.4:
            p["location"] = rnd.choice(LOCATIONS)
        if rnd.random() < 0.7:
            p["preferred_amenities"] = rnd.sample(AMENITIES, rnd.randint(1, 4))
        if rnd.random() < 0.15:
            p["min_school_rating"] = rnd.randint(3, 9)
        if rnd.random() < 0.3:
            p["limit"] = rnd.choice([5, 10, 20])
        if not p or (len(p) == 1 and "limit" in p):
            continue
        key = json.dumps(p, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append(p)
    return out


def pct(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(math.ceil(q * len(sorted_ms))) - 1))]


def client(a):
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    sets = preference_sets(a.requests, a.seed)
    if a.repeat:
        sets = [sets[0]] * a.requests
    lat, items, errors = [], 0, 0
    for p in sets:
        body = json.dumps(p)
        t0 = time.perf_counter()
        conn.request("POST", "/api/recommendations", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        lat.append((time.perf_counter() - t0) * 1000.0)
        if r.status != 200:
            errors += 1
            if errors <= 3:
                print("error: %d %s for %s" % (r.status, data[:200], body), file=sys.stderr)
        else:
            items += len(json.loads(data)["items"])
    lat.sort()
    print("RESULT requests=%d errors=%d items=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f mean_ms=%.2f" % (
        len(lat), errors, items, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), lat[-1], sum(lat) / len(lat)))


def after_writes(a):
    """--writes K: K rounds of (PATCH one listing's price, then one recommendation): the first answer
    after a write waits for the snapshot's rebuild."""
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/api/auth/login", json.dumps({"email": a.email, "password": a.password}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    tok = json.loads(r.read())["access_token"]
    sets = preference_sets(a.requests + a.writes, a.seed + 1)[a.requests:]
    lat = []
    for k, p in enumerate(sets):
        pid = 1 + (k * 7919) % 3000
        conn.request("PATCH", "/api/properties/%d" % pid, json.dumps({"price": 100000 + k}),
                     {"Content-Type": "application/json", "Authorization": "Bearer " + tok})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("PATCH /api/properties/%d: %d" % (pid, r.status))
        t0 = time.perf_counter()
        conn.request("POST", "/api/recommendations", json.dumps(p), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        lat.append((time.perf_counter() - t0) * 1000.0)
    lat.sort()
    print("RESULT writes=%d p50_ms=%.1f max_ms=%.1f" % (len(lat), pct(lat, 0.5), lat[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("listings")
    g.add_argument("--rows", type=int, default=100000)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo"))
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("--requests", type=int, default=2000)
    c.add_argument("--seed", type=int, default=7)
    c.add_argument("--repeat", action="store_true")
    c.add_argument("--writes", type=int, default=0)
    c.add_argument("--email")
    c.add_argument("--password")
    a = ap.parse_args()
    if a.cmd == "listings":
        listings(a)
    elif a.writes:
        after_writes(a)
    else:
        client(a)


if __name__ == "__main__":
    main()
