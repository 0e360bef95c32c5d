"""Work run by the worker process (`velro worker`) on the job engine (procrastinate).

- ``engine``: the procrastinate app, its schema install and the retry policy.
- ``settings``: the pipeline's settings, read from the environment.
- ``database``: the worker's own connection pool and service-role transactions.
- ``tasks``: the jobs: FAL submission, the poller, media copy, analytics refresh, and the
  recovery of jobs whose worker died.

May import backend.fal, backend.media and the database driver; never Flask, so a worker
does not load the web app.
"""
