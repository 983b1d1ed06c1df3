"""The HTTP API (FastAPI) and the crew page."""
