"""``notetaker web``: a read-only page over the data directory — meetings, a meeting's
timeline, transcript and summary with its audio one click away, and search.

Optional: ``pip install 'notetaker[web]'`` (Starlette, Jinja2, uvicorn)."""
