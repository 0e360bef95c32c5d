"""`python -m backend ...` is the `velro` command, for when the script is not on PATH."""

from backend.cli import main

main(prog_name="velro")
