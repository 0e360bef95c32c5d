"""What the tests and the bench share to run real servers: free ports, gunicorn for the
length of a block, waiting for a condition. Development tooling: it imports nothing from
``backend``, and ``backend`` never imports it.
"""
