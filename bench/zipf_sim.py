#!/usr/bin/python3
"""bench/zipf_sim.py: hit rates of model caches under the Zipf workload of bench/zipf.lua.

    /usr/bin/python3 bench/zipf_sim.py --n 100000 --s 1.1 --k 10000 [--k 9800 ...]
    /usr/bin/python3 bench/zipf_sim.py --n 100000 --s 1.1 --top 10000 --mult 48271   # ids of the top ranks

For each capacity K (entries) prints one line
    SIM k=K ideal=.. lru=.. lru16=..
  ideal: the best any cache of K entries can do for independent requests (LFU-optimal: the K most
         probable ids always held) = sum of the K largest probabilities, computed exactly;
  lru:   one LRU list of K entries, simulated on --samples draws after --warm draws;
  lru16: 16 LRU lists of K/16 entries, ids spread over them by a hash (hearth's cache_memory.c has
         16 shards, each with a sixteenth of the byte budget; here each gets K/16 entries).
--top T prints the ids of ranks 1..T instead (the id of rank k is ((k-1)*MULT mod N)+1, as in
bench/zipf.lua). Standard library only; fixed seed.
"""
import argparse
import bisect
import random
from collections import OrderedDict
from itertools import accumulate


def lru(draws, cap, warm):
    c = OrderedDict()
    hits = 0
    for i, x in enumerate(draws):
        if x in c:
            c.move_to_end(x)
            if i >= warm:
                hits += 1
        else:
            c[x] = None
            if len(c) > cap:
                c.popitem(last=False)
    return hits / (len(draws) - warm)


def lru_sharded(draws, cap, warm, shards=16):
    cs = [OrderedDict() for _ in range(shards)]
    per = max(1, cap // shards)
    hits = 0
    for i, x in enumerate(draws):
        c = cs[((x * 2654435761) >> 7) % shards]
        if x in c:
            c.move_to_end(x)
            if i >= warm:
                hits += 1
        else:
            c[x] = None
            if len(c) > per:
                c.popitem(last=False)
    return hits / (len(draws) - warm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--s", type=float, default=1.1)
    ap.add_argument("--k", type=int, action="append")
    ap.add_argument("--samples", type=int, default=1500000)
    ap.add_argument("--warm", type=int, default=300000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--mult", type=int, default=48271)
    a = ap.parse_args()
    if a.top:
        for k in range(1, a.top + 1):
            print((k - 1) * a.mult % a.n + 1)
        return
    w = [k ** -a.s for k in range(1, a.n + 1)]
    total = sum(w)
    cum = list(accumulate(w))
    rnd = random.Random(a.seed)
    draws = rnd.choices(range(1, a.n + 1), cum_weights=cum, k=a.warm + a.samples)
    for k in a.k or [10000]:
        ideal = sum(w[:k]) / total
        print(f"SIM k={k} ideal={ideal:.4f} lru={lru(draws, k, a.warm):.4f} lru16={lru_sharded(draws, k, a.warm):.4f}"
              f" (n={a.n} s={a.s} draws={a.samples} after {a.warm} warm-up)", flush=True)


if __name__ == "__main__":
    main()
