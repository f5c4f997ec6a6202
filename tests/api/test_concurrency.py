"""Concurrent writers: no lost updates, one winner per If-Match version, no 5xx under load."""
import threading

import harness
from harness import ServerTestCase, valid_property


def run_threads(n, fn):
    results = [None] * n
    errors = []
    barrier = threading.Barrier(n)

    def wrap(i):
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except Exception as e:  # noqa
            errors.append(repr(e))

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return results, errors


class ConcurrencyTest(ServerTestCase):
    ENV = {"HEARTH_THREADS": "2", "HEARTH_WORKERS": "4"}

    def test_concurrent_creates(self):
        def fn(i):
            out = []
            for k in range(15):
                r = self.server.request("POST", "/api/properties",
                                        valid_property(title="CC %d-%d" % (i, k), source="cc", external_id="%d-%d" % (i, k)))
                out.append((r.status, r.json["id"] if r.status == 201 else repr(r)))
            return out
        results, errors = run_threads(8, fn)
        self.assertEqual(errors, [])
        flat = [x for res in results for x in res]
        bad = [x for x in flat if x[0] != 201]
        self.assertEqual(bad, [], "concurrent creates failed")
        ids = [x[1] for x in flat]
        self.assertEqual(len(set(ids)), len(ids), "duplicate ids handed out")

    def test_concurrent_duplicate_external_id(self):
        def fn(i):
            r = self.server.request("POST", "/api/properties",
                                    valid_property(title="Race", source="race", external_id="same-one"))
            return r.status
        results, errors = run_threads(8, fn)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), [201] + [409] * 7, results)

    def test_no_lost_updates(self):
        pid = self.server.request("POST", "/api/properties", valid_property(title="Lost update")).json["id"]
        fields = ["bedrooms", "size_sqft", "lot_size_sqft", "commute_time", "year_built", "bathrooms"]
        values = {"bedrooms": 9, "size_sqft": 4321, "lot_size_sqft": 12345, "commute_time": 33,
                  "year_built": 2001, "bathrooms": 3.5}

        def fn(i):
            f = fields[i]
            r = self.server.request("PATCH", "/api/properties/%d" % pid, {f: values[f]})
            return r.status, repr(r)
        results, errors = run_threads(len(fields), fn)
        self.assertEqual(errors, [])
        self.assertEqual([s for s, _ in results], [200] * len(fields), results)
        p = self.request("GET", "/api/properties/%d" % pid).json
        for f in fields:
            self.assertEqual(p[f], values[f], "update of %s was lost" % f)
        self.assertEqual(p["version"], 1 + len(fields))

    def test_if_match_single_winner(self):
        pid = self.server.request("POST", "/api/properties", valid_property(title="Winner")).json["id"]

        def fn(i):
            r = self.server.request("PATCH", "/api/properties/%d" % pid, {"title": "W%d" % i}, {"If-Match": '"1"'})
            return r.status
        results, errors = run_threads(8, fn)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), [200] + [412] * 7, results)
        p = self.request("GET", "/api/properties/%d" % pid).json
        self.assertEqual(p["version"], 2)

    def test_concurrent_deletes(self):
        pid = self.server.request("POST", "/api/properties", valid_property(title="Del race")).json["id"]

        def fn(i):
            return self.server.request("DELETE", "/api/properties/%d" % pid).status
        results, errors = run_threads(8, fn)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), [204] + [404] * 7, results)

    def test_readers_and_writers(self):
        def fn(i):
            bad = []
            for k in range(20):
                if i % 2:
                    r = self.server.request("GET", "/api/properties?limit=50&sort=-price")
                else:
                    r = self.server.request("POST", "/api/properties", valid_property(title="RW %d %d" % (i, k)))
                if r.status >= 500:
                    bad.append(repr(r))
            return bad
        results, errors = run_threads(10, fn)
        self.assertEqual(errors, [])
        self.assertEqual([b for res in results for b in res], [])


class SmallPoolConcurrencyTest(ConcurrencyTest):
    """The same with one event loop thread, one worker and one database connection: requests
    queue for the pool instead of failing or deadlocking."""
    ENV = {"HEARTH_THREADS": "1", "HEARTH_WORKERS": "1", "HEARTH_DB_POOL": "1"}


if __name__ == "__main__":
    harness.main()
