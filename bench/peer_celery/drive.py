#!/usr/bin/python3
"""bench/peer_celery/drive.py: the Celery side of bench/jobs.sh (run from this directory, with
CELERY_REDIS_URL set and a worker running).

usage: drive.py ping [--timeout 60]            one task through, to know the worker is up
       drive.py run [--jobs 10000] [--poll 0.01] [--timeout 300]

run: t0; noop.delay() N times (one client, one thread: the usual way to enqueue); t_enqueued;
then waits for all N results: ResultSet(results).get(), which on the Redis result backend is
join_native (MGET of the pending result keys, then sleep POLL s, until all are in; interval
lowered from Celery's 0.5 s default so that the poll is not what is measured); t_done. Checks
every result is {} (SUCCESS). Prints, last:
  RESULT jobs=.. enqueue_s=.. total_s=.. jobs_per_s=.. enqueue_per_s=.. succeeded=.. errors=..
"""
import argparse
import sys
import time

from celery.result import ResultSet

from app import app, noop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ping", "run"])
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--poll", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--wait", choices=["native", "each"], default="native")
    a = ap.parse_args()
    if a.mode == "ping":
        deadline = time.monotonic() + a.timeout
        while True:
            try:
                r = noop.delay()
                if r.get(timeout=5) == {}:
                    print("PING ok")
                    return
            except Exception as e:  # the worker is still starting: try again
                if time.monotonic() > deadline:
                    print(f"drive.py: no answer from the Celery worker: {e!r}", file=sys.stderr)
                    sys.exit(1)
    t0 = time.perf_counter()
    results = [noop.delay() for _ in range(a.jobs)]
    t_enq = time.perf_counter()
    errors = 0
    if a.wait == "native":
        values = ResultSet(results).get(timeout=a.timeout, interval=a.poll, propagate=False)
    else:
        values = [r.get(timeout=a.timeout, interval=a.poll, propagate=False) for r in results]
    t_done = time.perf_counter()
    ok = sum(1 for v in values if v == {})
    errors = len(values) - ok
    total, enq = t_done - t0, t_enq - t0
    print(f"RESULT jobs={a.jobs} enqueue_s={enq:.3f} total_s={total:.3f} jobs_per_s={a.jobs / total:.1f} "
          f"enqueue_per_s={a.jobs / enq:.1f} succeeded={ok} errors={errors} wait={a.wait}")
    app.close()
    sys.exit(0 if ok == a.jobs else 1)


if __name__ == "__main__":
    main()
