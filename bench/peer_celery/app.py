"""bench/peer_celery/app.py: the Celery peer of bench/jobs.sh. One no-op task that succeeds with the
same result as hearth's `noop` job ({}), Redis as broker and result backend (CELERY_REDIS_URL),
acks_late (a task is acknowledged after it ran, so a worker that dies mid-task does not lose it,
the closest Celery comes to hearth's leases). Everything else is Celery 5's defaults (JSON
serializer, prefetch multiplier 4, results kept for a day).

Worker: celery -A app worker -P prefork -c $(nproc)   (run from this directory)
"""
import os

from celery import Celery

app = Celery("peer", broker=os.environ["CELERY_REDIS_URL"], backend=os.environ["CELERY_REDIS_URL"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=False,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop():
    return {}
