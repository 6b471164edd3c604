"""The HTTP API (FastAPI): the app, the still-image and camera routes, WHEP, uploads."""
