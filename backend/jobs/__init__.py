"""Work run by the worker process (`velro worker`) on the job engine (procrastinate).

- ``engine``: the procrastinate app, its schema install (own schema, no API-role grants)
  and the submit retry policy.
- ``database``: the worker's own connection pool and service-role transactions.
- ``tasks``: the jobs: FAL submission, the FAL poller, media copy, analytics refresh, and
  the retry of jobs whose worker died.
- ``analytics``: the analytics views' refresh, under an advisory lock.
- ``worker``: runs the engine's worker on the pipeline queue.

Settings are the app's (``backend.config.load_settings``): one set of names, one parser
and the same fail-closed checks for the worker as for the web app.

May import backend.config, backend.fal, backend.media and the database driver; never
Flask, so a worker does not load the web app.
"""
