"""bench/peer_fastapi/compare.py HEARTH_BASE PEER_BASE: checks that hearth and the FastAPI peer
answer the same queries with the same JSON (the benchmark's query mix, plus following the cursor of
a few of them). Prints one line per query; exits 1 on any difference."""
import json
import sys
import urllib.error
import urllib.request

hearth, peer = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
QUERIES = [
    "/api/properties?city=Ames&min_bedrooms=3&max_price=250000&sort=price&limit=20",
    "/api/properties?city=Ames&min_bedrooms=2&min_price=100000&max_price=300000&sort=-price&limit=20",
    "/api/properties?city=Sacramento&min_bedrooms=1&min_price=50000&max_price=400000&sort=created_at&limit=20",
    "/api/properties?city=Elk%20Grove&min_bedrooms=4&min_price=75000&max_price=500000&sort=-created_at&limit=20",
    "/api/properties?city=Folsom&min_bedrooms=3&min_price=100000&max_price=150000&sort=price&limit=20",
    "/api/properties?city=Roseville&min_bedrooms=2&sort=-price&limit=5",
    "/api/properties?max_price=200000&min_bedrooms=3&limit=20",
    "/api/properties?sort=year_built&limit=10",
    "/api/properties?status=active&property_type=condo,townhouse&sort=-size_sqft&limit=7",
]


def get(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        print(f"   {base}{path}: HTTP {e.code}: {e.read()[:300]!r}")
        return e.code, b"{}"


bad = 0
for q in QUERIES:
    follow = 2
    while q and follow >= 0:
        (hs, hb), (ps, pb) = get(hearth, q), get(peer, q)
        h, p = json.loads(hb), json.loads(pb)
        same = hs == ps == 200 and h == p
        print(f"   {'same' if same else 'DIFFERENT'}: {len(h.get('items', []))} items, "
              f"{'bytes identical' if hb == pb else 'same JSON values' if same else 'differ'}  {q}")
        if not same:
            bad += 1
            for i, (a, b) in enumerate(zip(h.get("items", []), p.get("items", []))):
                if a != b:
                    print("     first differing item", i, {k: (a.get(k), b.get(k)) for k in a if a.get(k) != b.get(k)})
                    break
            break
        cur = h.get("next_cursor")
        q = (q.split("&cursor=")[0] + "&cursor=" + cur) if cur else None
        follow -= 1
sys.exit(1 if bad else 0)
