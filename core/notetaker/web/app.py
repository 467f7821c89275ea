"""The meeting page's ASGI app (Starlette). Read-only: it reads the session index and the
files under the data directory; nothing on a page changes or deletes anything.

Paths carry ids only (``{id:int}``): anything else is a 404 before a file is looked at,
and a file is only ever one the index names (a track) or one of the fixed notes names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from notetaker.config import Settings
from notetaker.errors import RecordingError, SearchError
from notetaker.notes.picture import colour_of, label_of, lanes
from notetaker.notes.render import clock
from notetaker.recorder.index import Meeting, MeetingIndex
from notetaker.recorder.paths import DataLayout
from notetaker.web.auth import TOKEN_COOKIE, link_cookie, link_opens, same

#: The notes files a page offers for download (nothing else under the folder is served).
NOTES_FILES: Final = ("notes.md", "notes.json", "notes.srt", "notes.vtt", "timeline.png")
TEMPLATES: Final = Path(__file__).parent / "templates"

Handler = Callable[[Request], Awaitable[Response]]


class Access:
    """The operator's token and the signing secret; ``now`` is injected for tests."""

    def __init__(self, token: str, secret: bytes, now: Callable[[], float] = time.time) -> None:
        self.token, self.secret, self.now = token, secret, now

    def admin(self, request: Request) -> bool:
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        return bool(given) and same(given, self.token)

    def meeting(self, request: Request, meeting_id: int) -> bool:
        link = request.query_params.get("link") or request.cookies.get(link_cookie(meeting_id))
        return link is not None and link_opens(self.secret, meeting_id, link, self.now())


def create_app(settings: Settings, access: Access) -> Starlette:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.globals["clock"] = clock
    templates = Jinja2Templates(env=env)
    layout = DataLayout(settings.data_dir)

    def page(
        request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
    ) -> Response:
        response: Response = templates.TemplateResponse(
            request, name, context or {}, status_code=status
        )
        return response

    def index() -> MeetingIndex:
        return MeetingIndex.open(settings.data_dir)

    def refused(request: Request) -> Response:
        return page(request, "refused.html", status=401)

    def not_found(request: Request, what: str) -> Response:
        return page(request, "not_found.html", {"what": what}, 404)

    def into_cookie(request: Request, response: Response, mid: int | None) -> Response:
        """A valid ``?token=`` (or, on meeting ``mid``'s pages, ``?link=``) moves into an
        HttpOnly cookie and off the address bar (and out of shared screenshots)."""
        link = request.query_params.get("link")
        if mid is not None and link is not None and access.meeting(request, mid):
            response = RedirectResponse(request.url.remove_query_params("link"), 303)
            _set_cookie(response, link_cookie(mid), link, f"/meetings/{mid}")
        elif "token" in request.query_params and access.admin(request):
            response = RedirectResponse(request.url.remove_query_params("token"), 303)
            _set_cookie(response, TOKEN_COOKIE, access.token, "/")
        return response

    def admin_only(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not access.admin(request):
                return refused(request)
            return into_cookie(request, await handler(request), None)

        return guarded

    def meeting_scope(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            mid = int(request.path_params["id"])
            if not (access.admin(request) or access.meeting(request, mid)):
                return refused(request)
            return into_cookie(request, await handler(request), mid)

        return guarded

    def known_meeting(mid: int) -> Meeting | None:
        idx = index()
        try:
            return idx.get_meeting(mid)
        except RecordingError:
            return None
        finally:
            idx.close()

    @admin_only
    async def meetings(request: Request) -> Response:
        idx = index()
        try:
            rows = [idx.get_meeting(m.id) for m in idx.list_meetings()]
        finally:
            idx.close()
        return page(request, "meetings.html", {"meetings": [_row(m) for m in rows]})

    @meeting_scope
    async def meeting(request: Request) -> Response:
        from notetaker.meeting import meeting_notes

        mid = int(request.path_params["id"])
        idx = index()
        try:
            try:
                row = idx.get_meeting(mid)
            except RecordingError:
                return not_found(request, f"meeting {mid}")
            notes = meeting_notes(settings, idx, mid)
        finally:
            idx.close()
        folder = layout.meeting_dir(mid) / "notes"
        summary = _written_summary(folder / "notes.json")
        tracks = {t.user_id for t in row.tracks if t.path.is_file()}
        duration = max(notes.duration, 1.0)
        rows = [
            {
                "name": lane.name,
                "user_id": lane.user_id,
                "speech": [(s / duration * 100, (e - s) / duration * 100) for s, e in lane.speech],
                "missing": [
                    (
                        m.start / duration * 100,
                        m.duration / duration * 100,
                        colour_of(m.reason),
                        label_of(m.reason),
                    )
                    for m in lane.missing
                ],
            }
            for lane in lanes(notes)
        ]
        return page(
            request,
            "meeting.html",
            {
                "m": _row(row),
                "notes": notes,
                "lanes": rows,
                "summary": summary,
                "tracks": tracks,
                "files": [n for n in NOTES_FILES if (folder / n).is_file()],
                "admin": access.admin(request),
            },
        )

    @meeting_scope
    async def track(request: Request) -> Response:
        mid, uid = int(request.path_params["id"]), int(request.path_params["user_id"])
        row = known_meeting(mid)
        if row is None:
            return not_found(request, f"meeting {mid}")
        path = next((t.path for t in row.tracks if t.user_id == uid), None)
        if path is None or not path.is_file():
            return not_found(request, f"a track of user {uid} in meeting {mid}")
        return FileResponse(path, media_type="audio/ogg", filename=f"{mid}-{uid}.opus")

    @meeting_scope
    async def notes_file(request: Request) -> Response:
        mid, name = int(request.path_params["id"]), str(request.path_params["name"])
        path = layout.meeting_dir(mid) / "notes" / name
        if name not in NOTES_FILES or not path.is_file():
            return not_found(request, name)
        return FileResponse(path, filename=f"meeting-{mid}-{name}")

    @meeting_scope
    async def bundle(request: Request) -> Response:
        """The notes files in one zip (the tracks are downloads of their own)."""
        import io
        import zipfile

        mid = int(request.path_params["id"])
        folder = layout.meeting_dir(mid) / "notes"
        present = [n for n in NOTES_FILES if (folder / n).is_file()]
        if not present:
            return not_found(request, f"notes of meeting {mid}")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name in present:
                bundle.write(folder / name, f"meeting-{mid}/{name}")
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="meeting-{mid}-notes.zip"'},
        )

    @admin_only
    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "")
        hits: list[Any] = []
        error = ""
        if query.strip():
            idx = index()
            try:
                hits = idx.search(query, limit=50)
            except SearchError as exc:
                error = str(exc)
            finally:
                idx.close()
        return page(request, "search.html", {"q": query, "hits": hits, "error": error, "day": _day})

    async def missing(request: Request, exc: Exception) -> Response:
        return not_found(request, request.url.path)

    return Starlette(
        routes=[
            Route("/", meetings),
            Route("/search", search),
            Route("/meetings/{id:int}", meeting),
            Route("/meetings/{id:int}/tracks/{user_id:int}", track),
            Route("/meetings/{id:int}/notes.zip", bundle),
            Route("/meetings/{id:int}/notes/{name}", notes_file),
        ],
        exception_handlers={404: missing},
    )


def _set_cookie(response: Response, name: str, value: str, path: str) -> None:
    response.set_cookie(name, value, path=path, httponly=True, samesite="strict")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _row(m: Any) -> dict[str, Any]:
    end = m.stopped_at or m.alive_at or m.started_at
    return {
        "id": m.id,
        "guild_id": m.guild_id,
        "channel": m.channel_name or f"channel {m.channel_id}",
        "date": _day(m.started_at),
        "duration": clock(max(0.0, end - m.started_at)),
        "speakers": ", ".join(s.display_name or str(s.user_id) for s in m.speakers),
        "status": m.status,
        "live": m.status == "recording",
    }


def _written_summary(path: Path) -> dict[str, Any] | None:
    """The summary the notes were posted with (an llm digest or the quoted lines)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    summary = data.get("summary")
    return summary if isinstance(summary, dict) else None
