"""Work run by the worker process (`velro worker`) on the job engine (procrastinate).

- ``engine``: the procrastinate app, its schema install (own schema, no API-role grants)
  and the submit retry policy.
- ``settings``: the pipeline's settings, read from the environment.
- ``database``: the worker's own connection pool and service-role transactions.
- ``tasks``: the jobs: FAL submission, the FAL poller, media copy, analytics refresh, and
  the retry of jobs whose worker died.
- ``analytics``: the analytics views' refresh, under an advisory lock.
- ``worker``: runs the engine's worker on the pipeline queue.

May import backend.fal, backend.media and the database driver; never Flask, so a worker
does not load the web app.
"""
