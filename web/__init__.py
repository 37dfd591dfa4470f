"""The HTTP layer of seedqa: a FastAPI app (JSON API and server-rendered pages) over :mod:`qa`.

Build it with :func:`web.app.create_app`; nothing is loaded until the app's lifespan starts.
"""
