"""One module per scenario. Each exposes `run(...) -> dict` that measures a subject and its
baseline in the same run and returns summaries, ratios and checks as plain data."""
