"""gunicorn's settings for Velro (it reads ./gunicorn.conf.py by itself): the worker class,
and Prometheus across workers.

The worker is gunicorn's gthread worker, which also answers the requests gunicorn refuses
before the app sees them (an overlong request line, oversized headers) in the API's JSON
error shape (backend/http/gunicorn_worker.py).

Each worker is its own process with its own counters, so prometheus_client writes them to
files in PROMETHEUS_MULTIPROC_DIR and a scrape adds up the files of every process. The
directory must be known before a worker first imports prometheus_client, so it is settled
here, in the master, before any worker forks:

- given (``make run`` gives one, shared with ``velro worker``), it is used as it is;
- not given, a fresh directory is made for this master (and deleted when it stops).

At start, files left by processes that no longer run are deleted (a restart begins from
zero, while a running ``velro worker`` keeps its counts); when a worker exits, its live
gauges (pool usage, listener trust) are dropped so they stop counting.

Command-line flags (the Procfile's workers, threads, bind) still win over these.
"""

import glob
import os
import re
import shutil
import tempfile

worker_class = "backend.http.gunicorn_worker.Worker"

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
PROCESS_FILE = re.compile(r"_(\d+)\.db$")


MADE_HERE: list[str] = []


def _settle_metrics_directory() -> str:
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        directory = tempfile.mkdtemp(prefix="velro-metrics-")
        os.environ[MULTIPROCESS_DIR] = directory
        MADE_HERE.append(directory)
    os.makedirs(directory, exist_ok=True)
    return directory


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_files_of_stopped_processes(directory: str) -> None:
    for path in glob.glob(os.path.join(directory, "*.db")):
        found = PROCESS_FILE.search(path)
        if found and not _process_runs(int(found.group(1))):
            os.remove(path)


# at import, in the master: before gunicorn loads the app or forks a worker
_delete_files_of_stopped_processes(_settle_metrics_directory())


def child_exit(server, worker):
    """A worker ended: its live gauges no longer describe a running process."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The master stops: a directory made for it alone goes with it."""
    for directory in MADE_HERE:
        shutil.rmtree(directory, ignore_errors=True)
