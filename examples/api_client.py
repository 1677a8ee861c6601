"""A typed Python client for the Study Platform researcher API, written as plain httpx calls
against the documented endpoints (see /api/docs/ or /api/redoc/ on your server).

It creates a study from a protocol YAML file, watches enrollment, and downloads an anonymized
export:

    export STUDYPLATFORM_TOKEN=...   # an API token of a researcher account
    python examples/api_client.py --url https://studies.example.org \\
        --protocol examples/companion-rct.yaml --target 20 --watch-seconds 600 --out exports/

Use `--slug` instead of `--protocol` to watch and export a study that already exists (a study
created from YAML starts as a draft: it enrolls nobody until it is launched in the console).
Only httpx is needed (`pip install httpx`); nothing here imports the platform.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import httpx


class Study(TypedDict):
    """components/schemas/Study in /api/schema/."""

    slug: str
    title: str
    description: str
    status: str
    timezone: str
    target_enrollment: int | None
    duration_days: int
    current_version: int
    created_at: str
    updated_at: str


class Export(TypedDict):
    """components/schemas/Export in /api/schema/ (the fields this client reads)."""

    id: int
    status: str
    progress: int
    sha256: str
    size: int | None
    error: str


@dataclass(frozen=True)
class Enrollment:
    """GET /api/studies/{slug}/funnel/ and /participants/: stage counts and participant states."""

    funnel: dict[str, int]
    by_status: dict[str, int]

    @property
    def enrolled(self) -> int:
        return sum(self.by_status.values())


class ApiError(RuntimeError):
    """A 4xx/5xx answer; `body` is the decoded error (`{"detail": ...}` or field -> messages)."""

    def __init__(self, response: httpx.Response):
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        super().__init__(
            f"{response.request.method} {response.request.url}: {response.status_code} {body}"
        )
        self.status_code = response.status_code
        self.body = body


class StudyPlatform:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StudyPlatform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise ApiError(response)
        return response.json()

    # POST /api/studies/ -> 201 Study (400 ProtocolInvalid lists each problem with its path)
    def create_study(self, protocol_yaml: str, *, change_note: str = "") -> Study:
        return self._json(
            "POST", "/api/studies/", json={"yaml": protocol_yaml, "change_note": change_note}
        )

    # GET /api/studies/{slug}/
    def study(self, slug: str) -> Study:
        return self._json("GET", f"/api/studies/{slug}/")

    # GET /api/studies/{slug}/funnel/ and GET /api/studies/{slug}/participants/
    def enrollment(self, slug: str) -> Enrollment:
        funnel = self._json("GET", f"/api/studies/{slug}/funnel/")
        by_status: dict[str, int] = {}
        for row in self._json("GET", f"/api/studies/{slug}/participants/", params={"pilot": "0"}):
            by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        return Enrollment(funnel=funnel, by_status=by_status)

    def watch_enrollment(
        self,
        slug: str,
        *,
        target: int,
        seconds: float,
        interval: float = 30.0,
        on_change: Callable[[Enrollment], None] = lambda e: None,
    ) -> Enrollment:
        """Poll until `target` participants have enrolled or `seconds` have passed."""
        deadline = time.monotonic() + seconds
        last: Enrollment | None = None
        while True:
            current = self.enrollment(slug)
            if current != last:
                on_change(current)
                last = current
            if current.enrolled >= target or time.monotonic() >= deadline:
                return current
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    # POST /api/studies/{slug}/exports/ -> 201 Export (400: option -> what is wrong with it)
    def create_export(self, slug: str, **options: Any) -> Export:
        return self._json("POST", f"/api/studies/{slug}/exports/", json=options)

    # GET /api/studies/{slug}/exports/{id}/
    def wait_for_export(
        self, slug: str, export_id: int, *, seconds: float = 600.0, interval: float = 2.0
    ) -> Export:
        deadline = time.monotonic() + seconds
        while True:
            export: Export = self._json("GET", f"/api/studies/{slug}/exports/{export_id}/")
            if export["status"] == "done":
                return export
            if export["status"] == "failed":
                raise RuntimeError(f"export {export_id} failed: {export['error']}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"export {export_id} still {export['status']}")
            time.sleep(interval)

    # GET /api/studies/{slug}/exports/{id}/download/ -> application/zip (audited)
    def download_export(self, slug: str, export_id: int, directory: Path) -> Path:
        url = f"/api/studies/{slug}/exports/{export_id}/download/"
        with self._http.stream("GET", url, headers={"Accept": "application/zip"}) as response:
            if response.is_error:
                response.read()
                raise ApiError(response)
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{slug}-export-{export_id}.zip"
            with path.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="The platform's base URL.")
    parser.add_argument("--token", default=os.environ.get("STUDYPLATFORM_TOKEN", ""))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--protocol", type=Path, help="Create a study from this YAML file.")
    source.add_argument("--slug", help="Use this existing study.")
    parser.add_argument("--target", type=int, default=1, help="Stop watching at N enrolled.")
    parser.add_argument("--watch-seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=30.0, help="Seconds between polls.")
    parser.add_argument("--out", type=Path, default=Path("."), help="Where to save the zip.")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or STUDYPLATFORM_TOKEN) is required")

    with StudyPlatform(args.url, args.token) as api:
        try:
            if args.protocol:
                study = api.create_study(args.protocol.read_text(encoding="utf-8"))
                print(f"created {study['slug']} ({study['status']}, v{study['current_version']})")
            else:
                study = api.study(args.slug)
            slug = study["slug"]
            enrollment = api.watch_enrollment(
                slug,
                target=args.target,
                seconds=args.watch_seconds,
                interval=args.interval,
                on_change=lambda e: print(f"enrolled {e.enrolled}: {e.by_status}"),
            )
            export = api.create_export(slug, format="csv")
            export = api.wait_for_export(slug, export["id"])
            path = api.download_export(slug, export["id"], args.out)
        except ApiError as exc:
            print(exc, file=sys.stderr)
            return 1
    print(f"{enrollment.enrolled} enrolled; export {export['id']} saved to {path}")
    print(f"sha256 {export['sha256']}, {export['size']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
