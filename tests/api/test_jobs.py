"""Background jobs: every job's side effect happens exactly once across several worker processes,
a worker killed with SIGKILL mid-job has its job taken over when the lease expires, a job that
always fails goes dead after max_attempts with its retries spaced out, SIGTERM gives running jobs
back, and the jobs API (imports as jobs, who may see a job, cancel, retry, idempotency keys).
Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL."""
import os
import signal
import subprocess
import time
import unittest
import uuid

import harness
from harness import ServerTestCase, base_env

with open(os.path.join(harness.FIXTURES, "ames_small.csv"), "rb") as _f:
    FIXTURE_BYTES = _f.read()


def multipart(fields, files):
    """A multipart/form-data body: fields {name: text}, files {name: (filename, bytes)}."""
    boundary = "hearth-" + uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (
            boundary.encode(), name.encode(), value.encode())
    for name, (filename, data) in files.items():
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                b"Content-Type: text/csv\r\n\r\n" % (boundary.encode(), name.encode(), filename.encode()) + data + b"\r\n")
    out += b"--%s--\r\n" % boundary.encode()
    return out, "multipart/form-data; boundary=" + boundary


class Worker:
    """A `hearth worker` process on the server's database and data directory."""

    def __init__(self, server, env=None, args=()):
        self.log_path = os.path.join(server.data_dir, "worker-%s.log" % uuid.uuid4().hex[:8])
        self.log = open(self.log_path, "ab")
        full = dict(server.extra_env)
        full.update(env or {})
        self.proc = subprocess.Popen([harness.BIN, "worker"] + list(args), env=base_env(server.data_dir, full),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code


class JobsBase(ServerTestCase):
    """Helpers only: the tests are in the classes below, each with its own server."""

    ENV = {"HEARTH_TEST_JOBS": "1", "HEARTH_JOB_WORKERS": "0",
           "HEARTH_LOGIN_LIMITS": "account=1000/min:1000,address=10000/min:10000"}

    def enqueue(self, type_, payload=None, **extra):
        body = dict({"type": type_, "payload": payload or {}}, **extra)
        r = self.request("POST", "/api/jobs", body=body)
        self.assertEqual(r.status, 202, r)
        return r.json

    def job(self, jid, token=None):
        r = self.request("GET", "/api/jobs/%d" % jid, token=token or self.server.admin_token())
        self.assertEqual(r.status, 200, r)
        return r.json

    def wait_status(self, jid, statuses, bound=30):
        deadline = time.monotonic() + bound
        while True:
            j = self.job(jid)
            if j["status"] in statuses:
                return j
            if time.monotonic() > deadline:
                self.fail("job %d stayed %s (wanted %s)" % (jid, j["status"], statuses))
            time.sleep(0.05)

    def count(self, status):
        n, cursor = 0, None
        while True:
            path = "/api/jobs?limit=100&status=%s" % status + ("&cursor=" + cursor if cursor else "")
            r = self.request("GET", path, token=self.server.admin_token())
            self.assertEqual(r.status, 200, r)
            n += len(r.json["items"])
            cursor = r.json["next_cursor"]
            if not cursor:
                return n

    def recorded(self):
        path = os.path.join(self.server.data_dir, "test-jobs.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [int(l) for l in f.read().split()]

class JobsTest(JobsBase):
    def test_a_job_that_always_fails_goes_dead_with_backoff(self):
        jid = self.enqueue("test.fail", max_attempts=3)["id"]
        w = Worker(self.server, args=["--concurrency", "1"])
        seen = []
        try:
            deadline = time.monotonic() + 30
            while True:
                j = self.job(jid)
                seen.append(j)
                if j["status"] == "dead":
                    break
                self.assertLess(time.monotonic(), deadline, "the job never went dead: %r" % j)
                time.sleep(0.02)
        finally:
            w.stop()
        self.assertEqual(j["attempts"], 3)
        self.assertIn("always fails", j["error"])
        self.assertGreaterEqual(self.server.metric('hearth_jobs_dead{queue="default"}'), 1)
        self.assertIsNotNone(j["finished_at"])
        # between attempts the job waits for its retry time, which is never before the failure
        waiting = [s for s in seen if s["status"] == "failed"]
        for s in waiting:
            self.assertGreaterEqual(s["run_at"], s["updated_at"], s)
        # the dead job can be retried by an admin, and then cancelled while it waits
        r = self.request("POST", "/api/jobs/%d/retry" % jid)
        self.assertEqual((r.status, r.json["status"], r.json["attempts"]), (200, "queued", 0))
        r = self.request("DELETE", "/api/jobs/%d" % jid)
        self.assertEqual((r.status, r.json["status"]), (200, "cancelled"))
        r = self.request("DELETE", "/api/jobs/%d" % jid)
        self.assert_error(r, 409, "conflict")

    def test_delayed_job_waits_and_can_be_cancelled(self):
        j = self.enqueue("test.record", delay_ms=3600000)
        self.assertEqual(j["status"], "queued")
        w = Worker(self.server, args=["--concurrency", "1"])
        try:
            time.sleep(0.5)
            self.assertEqual(self.job(j["id"])["status"], "queued")
            r = self.request("DELETE", "/api/jobs/%d" % j["id"])
            self.assertEqual((r.status, r.json["status"]), (200, "cancelled"))
        finally:
            w.stop()
        self.assertNotIn(j["id"], self.recorded())

    def test_idempotency_key_names_one_job(self):
        key = uuid.uuid4().hex
        a = self.request("POST", "/api/jobs", body={"type": "noop"}, headers={"Idempotency-Key": key})
        b = self.request("POST", "/api/jobs", body={"type": "noop"}, headers={"Idempotency-Key": key})
        self.assertEqual((a.status, b.status), (202, 200))
        self.assertEqual(a.json["id"], b.json["id"])

    def test_enqueue_validation(self):
        for body, field in (({"type": "no.such.type"}, "type"), ({"type": "noop", "queue": "urgent"}, "queue"),
                            ({"type": "noop", "priority": 5000}, "priority"), ({"type": "noop", "payload": [1]}, "payload"),
                            ({"type": "noop", "max_attempts": 0}, "max_attempts")):
            r = self.request("POST", "/api/jobs", body=body)
            self.assert_error(r, 422, "validation_failed")
            self.assertIn(field, [d["field"] for d in r.json["error"]["details"]])
        buyer = self.server.user("buyer")
        r = self.request("POST", "/api/jobs", body={"type": "noop"}, token=buyer["access_token"])
        self.assert_error(r, 403, "forbidden")
        self.assert_error(self.request("GET", "/api/jobs", token=buyer["access_token"]), 403, "forbidden")
        self.assert_error(self.request("GET", "/api/jobs/1", token=None), 401, "unauthorized")



class BatchTest(JobsBase):
    """POST /api/jobs {"jobs": [...]}: one transaction for the whole batch."""

    def test_a_batch_is_queued_in_order_and_runs_once(self):
        specs = [{"type": "test.record", "priority": i % 3, "queue": "high" if i % 5 == 0 else "default"}
                 for i in range(60)]
        r = self.request("POST", "/api/jobs", body={"jobs": specs})
        self.assertEqual(r.status, 202, r)
        items = r.json["items"]
        self.assertEqual(len(items), 60)
        ids = [j["id"] for j in items]
        self.assertEqual(ids, sorted(ids))
        for spec, j in zip(specs, items):
            self.assertEqual((j["type"], j["status"], j["queue"], j["priority"]),
                             (spec["type"], "queued", spec["queue"], spec["priority"]))
        r = self.request("GET", "/api/audit?action=job.create_batch&limit=1", token=self.server.admin_token())
        self.assertEqual(r.status, 200, r)
        audit = r.json["items"]
        self.assertEqual(audit[0]["detail"], {"count": 60, "ids": ids})
        w = Worker(self.server, args=["--concurrency", "2"])
        try:
            for jid in ids:
                self.wait_status(jid, ("succeeded",))
        finally:
            self.assertEqual(w.stop(), 0)
        self.assertEqual(sorted(i for i in self.recorded() if i in set(ids)), ids, "each side effect once")

    def test_a_bad_batch_changes_nothing(self):
        queued = self.count("queued")
        for body, field in (({"jobs": []}, "jobs"), ({"jobs": {"type": "noop"}}, "jobs"),
                            ({"jobs": [{"type": "noop"}] * 1001}, "jobs"),
                            ({"jobs": [{"type": "noop"}, {"type": "nope"}]}, "jobs[1].type"),
                            ({"jobs": [{"type": "noop"}, {"type": "noop", "queue": "x"}]}, "jobs[1].queue"),
                            ({"jobs": [{"type": "noop"}, 7]}, "jobs[1]")):
            r = self.request("POST", "/api/jobs", body=body)
            self.assert_error(r, 422, "validation_failed")
            self.assertIn(field, [d["field"] for d in r.json["error"]["details"]], r.json)
        self.assertEqual(self.count("queued"), queued)

    def test_idempotency_key_names_a_batch(self):
        key = uuid.uuid4().hex
        body = {"jobs": [{"type": "noop"}, {"type": "noop"}, {"type": "noop"}]}
        a = self.request("POST", "/api/jobs", body=body, headers={"Idempotency-Key": key})
        b = self.request("POST", "/api/jobs", body=body, headers={"Idempotency-Key": key})
        self.assertEqual((a.status, b.status), (202, 200))
        self.assertEqual([j["id"] for j in a.json["items"]], [j["id"] for j in b.json["items"]])


class PruneTest(JobsBase):
    ENV = dict(JobsBase.ENV, HEARTH_JOB_WORKERS="1")

    def test_prune_job(self):
        jid = self.enqueue("noop")["id"]
        self.wait_status(jid, ("succeeded",))
        time.sleep(0.5)  # the relay publishes the job's events (they are pruned once published)
        pid = self.enqueue("prune", {"events_hours": 0, "jobs_days": 0})["id"]
        j = self.wait_status(pid, ("succeeded",))
        self.assertGreaterEqual(j["result"]["jobs"], 1)
        self.assertGreaterEqual(j["result"]["events"], 1)
        self.assert_error(self.request("GET", "/api/jobs/%d" % jid, token=self.server.admin_token()), 404, "not_found")
        bad = self.enqueue("prune", {"jobs_days": -1})["id"]
        self.assertIn("jobs_days", self.wait_status(bad, ("dead",))["error"])

    def test_bad_schedules_stop_start_up(self):
        for spec in ("x=61 * * * *", "nameonly", "x=* * * * * noop [1]"):
            r = subprocess.run([harness.BIN, "serve", "--listen", "127.0.0.1:0"], env=base_env(self.server.data_dir,
                               dict(self.server.extra_env, HEARTH_SCHEDULES=spec)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, (spec, r.stderr))
            self.assertIn("HEARTH_SCHEDULES", r.stderr)


class ExactlyOnceTest(JobsBase):
    """At the default lease (30 s) no lease expires during a run, so no job runs twice: the side
    effect of a succeeded job happens exactly once. (A lease that expires under a running job lets
    another runner start it again: execution is at least once, completion exactly once; handlers
    whose side effects leave the database must be idempotent. docs/operations.md.)"""

    def test_1000_jobs_over_4_workers_run_exactly_once(self):
        before = set(self.recorded())
        ids = [self.enqueue("test.record")["id"] for _ in range(1000)]
        workers = [Worker(self.server, args=["--concurrency", "2"]) for _ in range(2)]
        try:
            deadline = time.monotonic() + 120
            while self.count("succeeded") < len(ids) + len(before):
                self.assertLess(time.monotonic(), deadline, "the jobs did not all finish")
                time.sleep(0.2)
        finally:
            codes = [w.stop() for w in workers]
        self.assertEqual(codes, [0, 0])
        done = [i for i in self.recorded() if i in set(ids)]
        self.assertEqual(sorted(done), sorted(ids), "every job's side effect exactly once")
        for jid in ids[:20] + ids[-20:]:
            j = self.job(jid)
            self.assertEqual((j["status"], j["attempts"], j["progress"]), ("succeeded", 1, 100))



class LeaseTest(JobsBase):
    ENV = dict(JobsBase.ENV, HEARTH_JOB_LEASE_MS="1000")

    def test_sigkill_mid_job_is_taken_over_after_the_lease(self):
        jid = self.enqueue("test.record", {"sleep_ms": 2500})["id"]
        first = Worker(self.server, args=["--concurrency", "1"])
        try:
            self.wait_status(jid, ("running",))
        finally:
            first.stop(signal.SIGKILL)
        self.assertEqual(self.job(jid)["status"], "running")  # its lease has not expired yet
        second = Worker(self.server, args=["--concurrency", "1"])
        try:
            j = self.wait_status(jid, ("succeeded",))
        finally:
            self.assertEqual(second.stop(), 0)
        self.assertEqual(j["attempts"], 2)
        self.assertEqual(self.recorded().count(jid), 1)

    def test_sigterm_gives_a_running_job_back(self):
        jid = self.enqueue("test.sleep", {"sleep_ms": 5000})["id"]
        w = Worker(self.server, env={"HEARTH_SHUTDOWN_TIMEOUT_MS": "200"}, args=["--concurrency", "1"])
        try:
            self.wait_status(jid, ("running",))
        finally:
            self.assertEqual(w.stop(), 0)
        j = self.job(jid)
        self.assertEqual((j["status"], j["attempts"]), ("queued", 0))
        # and a later worker runs it
        r = self.request("DELETE", "/api/jobs/%d" % jid)
        self.assertEqual(r.json["status"], "cancelled")


class ServeShutdownTest(unittest.TestCase):
    def test_sigterm_gives_back_serves_running_job(self):
        server = harness.Server(env={"HEARTH_TEST_JOBS": "1", "HEARTH_JOB_WORKERS": "1",
                                     "HEARTH_SHUTDOWN_TIMEOUT_MS": "500"}).start()
        try:
            r = server.request("POST", "/api/jobs", body={"type": "test.sleep", "payload": {"sleep_ms": 20000}})
            self.assertEqual(r.status, 202, r)
            jid = r.json["id"]
            deadline = time.monotonic() + 20
            while server.request("GET", "/api/jobs/%d" % jid, token=server.admin_token()).json["status"] != "running":
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            self.assertEqual(server.stop(), 0)
            again = harness.Server(data_dir=server.data_dir, env={"HEARTH_JOB_WORKERS": "0"}).start()
            try:
                j = again.request("GET", "/api/jobs/%d" % jid, token=again.admin_token(fresh=True)).json
                self.assertEqual((j["status"], j["attempts"]), ("queued", 0), j)
            finally:
                again.stop()
        finally:
            server.cleanup()


class ImportJobTest(ServerTestCase):
    ENV = {"HEARTH_JOB_WORKERS": "2", "HEARTH_LOGIN_LIMITS": "account=1000/min:1000,address=10000/min:10000"}

    def upload(self, token, fields=None, files=None):
        body, ctype = multipart(fields if fields is not None else {"format": "ames"},
                                files if files is not None else {"file": ("ames_small.csv", FIXTURE_BYTES)})
        return self.request("POST", "/api/imports", body=body, headers={"Content-Type": ctype}, token=token)

    def test_import_runs_as_a_job(self):
        agent = self.server.user("agent")
        r = self.upload(agent["access_token"])
        self.assertEqual(r.status, 202, r)
        job = r.json["job"]
        self.assertEqual(job["status"], "queued")
        self.assertEqual(r.headers["location"], "/api/jobs/%d" % job["id"])
        deadline = time.monotonic() + 30
        while True:
            j = self.request("GET", r.headers["location"], token=agent["access_token"]).json
            if j["status"] in ("succeeded", "dead"):
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual(j["status"], "succeeded", j)
        self.assertEqual(j["progress"], 100)
        self.assertEqual(j["result"]["inserted"] + j["result"]["updated"] + j["result"]["unchanged"], 40)
        # the rows belong to the agent who uploaded them, and the listing shows them
        items = self.request("GET", "/api/properties?limit=100&city=Ames").json["items"]
        self.assertTrue(any(i["owner_id"] == agent["id"] for i in items) or j["result"]["inserted"] == 0)
        # another agent may not see the job; an admin may
        other = self.server.user("agent")
        self.assert_error(self.request("GET", r.headers["location"], token=other["access_token"]), 403, "forbidden")
        self.assertEqual(self.request("GET", r.headers["location"], token=self.server.admin_token()).status, 200)

    def test_import_refusals(self):
        agent = self.server.user("agent")
        buyer = self.server.user("buyer")
        self.assert_error(self.upload(buyer["access_token"]), 403, "forbidden")
        self.assert_error(self.upload(None), 401, "unauthorized")
        r = self.upload(agent["access_token"], fields={})
        self.assert_error(r, 422, "validation_failed")
        self.assertIn("format", [d["field"] for d in r.json["error"]["details"]])
        r = self.upload(agent["access_token"], fields={"format": "xlsx"})
        self.assert_error(r, 422, "validation_failed")
        r = self.upload(agent["access_token"], files={})
        self.assertIn("file", [d["field"] for d in r.json["error"]["details"]])
        r = self.upload(agent["access_token"], files={"file": ("x.csv", b"\xff\xfe\x00bad")})
        self.assertIn("file", [d["field"] for d in r.json["error"]["details"]])
        r = self.request("POST", "/api/imports", body=b"--x\r\nnot a part", token=agent["access_token"],
                         headers={"Content-Type": "multipart/form-data; boundary=x"})
        self.assert_error(r, 400, "bad_request")
        r = self.request("POST", "/api/imports", body={"format": "ames"}, token=agent["access_token"])
        self.assert_error(r, 415, "unsupported_media_type")


if __name__ == "__main__":
    harness.main()
