"""Template helpers: Subresource Integrity computed at build time, tags for stylesheets,
scripts and module preloads, ``crossorigin`` when assets come from another origin."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from tornado.template import DictLoader
from tornado.web import RequestHandler

from .tornado_support import StaticTestCase

PAGE = """<!doctype html>
{% raw stylesheet_tag("css/app.css") %}
{% raw stylesheet_tag("css/print.css", media="print") %}
{% raw script_tag("js/app.mjs", module=True) %}
{% raw script_tag("js/old.js", defer=True) %}
{% raw modulepreload_tag("js/app.mjs") %}
<p data-sri="{{ static_integrity("css/app.css") }}"></p>
"""


class Page(RequestHandler):
    def get(self) -> None:
        self.render("page.html")


class Tags(RequestHandler):
    def get(self) -> None:
        self.write(self.ui["stylesheet_tag"]("css/app.css"))


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


class TagsTest(StaticTestCase):
    output = True
    files = {
        "css/app.css": b"body { background: url(../img/a.png) }\n" * 40,
        "css/print.css": b"body { color: black }\n",
        "img/a.png": b"\x89PNG" + bytes(100),
        "js/app.mjs": b"export const a = 1;\n",
        "js/old.js": b"var a = 1;\n",
    }
    host = ""

    def handlers(self) -> list[Any]:
        return [("/", Page), ("/tags", Tags)]

    def app_settings(self) -> dict[str, Any]:
        extra = {"assetver_url_host": self.host} if self.host else {}
        # Tornado caches template loaders by template_path, for every app in the process:
        # a path of this test's own keeps another test's loader out.
        loader = DictLoader({"page.html": PAGE})
        return {"template_loader": loader, "template_path": self.tmp, **extra}

    def test_tags_carry_the_integrity_of_the_served_bytes(self) -> None:
        html = self.fetch("/").body.decode()
        links = re.findall(
            r'<(?:link|script) [^>]*(?:href|src)="([^"]+)"[^>]*integrity="([^"]+)"', html
        )
        assert len(links) == 5, html
        for url, integrity in links:
            body = self.fetch(url.removeprefix(self.host)).body
            assert integrity == sri(body), url
        assert 'media="print"' in html and 'type="module"' in html and " defer" in html
        assert 'rel="modulepreload"' in html
        assert ("crossorigin" in html) == bool(self.host)
        assert f'data-sri="{sri(self.fetch(links[0][0].removeprefix(self.host)).body)}"' in html
        assert self.fetch("/tags").body.decode().startswith('<link rel="stylesheet"')


class CrossOriginTagsTest(TagsTest):
    host = "https://cdn.example.com"
