"""HTTP API (FastAPI) and the `python -m server` command line."""
