"""/docs works with no internet: Swagger UI's page references only this server's URLs."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.app import create_app
from tuner.settings import Settings


def test_docs_page_loads_only_local_assets() -> None:
    app = create_app(Settings(database_url="sqlite://"))
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assert urls, page.text
        remote = [u for u in urls if "//" in u]
        assert not remote, f"/docs loads {remote} from another host: blank offline"
        kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
        served = 0
        for url in urls:
            kind = next((k for ext, k in kinds.items() if url.endswith(ext)), None)
            if kind is None:
                continue
            answer = client.get(url)  # no key: the docs page and its files are public
            assert answer.status_code == 200, url
            assert kind in answer.headers["content-type"], (url, answer.headers)
            assert len(answer.content) > 100, url
            served += 1
        assert served == 3, urls
        assert client.get("/openapi.json").status_code == 200


def test_redoc_is_not_offered_from_a_cdn() -> None:
    app = create_app(Settings(database_url="sqlite://", auth="disabled"))
    with TestClient(app) as client:
        assert client.get("/redoc").status_code == 404
