"""PostgreSQL faults: the database stopped under load (every request is answered, with 503 and
Retry-After, none hangs, the server stays up), the database restarted (service returns without
restarting hearth), and an exhausted pool (a bounded wait, then 503). Runs in the PostgreSQL pass
of `make test`, against a PostgreSQL of its own (scripts/services.sh), so stopping it disturbs no
other test."""
import subprocess
import threading
import time

import harness
from harness import OwnServicesTestCase, services


class PostgresFaultTest(OwnServicesTestCase):
    ENV = {"HEARTH_CACHE_MB": "0", "HEARTH_DB_POOL": "2"}
    IMPORT = "ames_small.csv"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = cls.servers[0]
        cls.url = cls.own["DATABASE_URL"]

    def get(self, path, timeout=5):
        return self.server.request("GET", path, timeout=timeout)

    def test_stopped_then_restarted(self):
        self.assertEqual(self.get("/api/properties/1").status, 200)
        results, stop = [], threading.Event()

        def load():
            while not stop.is_set():
                try:
                    r = self.get("/api/properties?limit=5&sort=price")
                    results.append(r.status)
                    if r.status == 503:
                        assert "retry-after" in r.headers, r
                        assert r.json["error"]["code"] == "unavailable", r
                except Exception as e:  # a hang past the client timeout lands here
                    results.append(repr(e))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        services("pg-stop", self.dir)
        time.sleep(1.0)
        down_from = len(results)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        while_down = results[down_from:]
        self.assertTrue(while_down, "requests kept being answered while the database was down")
        self.assertTrue(all(s == 503 for s in while_down), set(map(str, while_down)))
        self.assertTrue(self.server.alive())
        r = self.server.request("GET", "/health/ready")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json["checks"]["database"]["status"], "unavailable")

        services("pg-start", self.dir)
        t0 = time.monotonic()
        status = None
        while time.monotonic() - t0 < 30:
            status = self.get("/api/properties/1").status
            if status == 200:
                break
            time.sleep(0.05)
        self.assertEqual(status, 200, "service did not return after PostgreSQL came back")
        print("\n  service returned %.2f s after PostgreSQL was started again" % (time.monotonic() - t0))
        self.assertEqual(self.server.request("GET", "/health/ready").status, 200)

    def test_pool_exhausted(self):
        # hold an exclusive lock from another session: the server's two connections block on it
        # (until the statement timeout), and further requests wait for a connection, then 503
        locker = subprocess.Popen(["psql", "-q", self.url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, text=True)
        locker.stdin.write("BEGIN; LOCK TABLE properties IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;\n")
        locker.stdin.flush()
        time.sleep(0.5)
        statuses = []

        def one():
            try:
                statuses.append(self.get("/api/properties/1", timeout=15).status)
            except Exception as e:
                statuses.append(repr(e))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        locker.stdin.close()
        locker.wait(timeout=30)
        self.assertIn(503, statuses, statuses)
        self.assertTrue(all(s in (200, 503) for s in statuses), statuses)
        self.assertEqual(self.get("/api/properties/1").status, 200)


if __name__ == "__main__":
    harness.main()
