"""A small Tornado app served through assetver, laid out like Tornado's deployment guide.

Production, several processes, serving a compiled output (its manifest is loaded
before the fork)::

    assetver build examples/static -o examples/dist
    python examples/app.py --port=8888 --processes=2 --output=examples/dist

or serving the tree itself with its manifest::

    assetver build examples/static
    python examples/app.py --port=8888 --processes=2 \
        --manifest=examples/static/.assetver/manifest.json

Development: ``python examples/app.py --debug [--output=examples/dist]``; edit
``static/css/site.css`` and reload the page: the stylesheet URL changes without a
restart.
"""

from __future__ import annotations

import asyncio
import os

import tornado.httpserver
import tornado.netutil
import tornado.process
import tornado.web
from tornado.options import define, options, parse_command_line

import assetver.tornado

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")

define("port", default=8888, help="port to listen on")
define("address", default="127.0.0.1", help="address to listen on")
define("processes", default=1, help="worker processes (0: one per core)")
define("debug", default=False, help="reload templates and re-version changed assets")
define("manifest", default="", help="manifest built by `assetver build` (production)")
define("output", default="", help="compiled output of `assetver build static -o DIR`")
define("url_style", default="query", help="query (?v=digest) or filename (app.digest.css)")


class MainHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.render("index.html", pid=os.getpid())


def make_app(
    *,
    debug: bool = False,
    manifest: str | None = None,
    output: str | None = None,
    url_style: str = "query",
) -> tornado.web.Application:
    """Builds the Application; with a manifest, nothing is hashed from here on."""
    return tornado.web.Application(
        [
            (r"/", MainHandler),
            (r"/(apple-touch-icon\.png)", assetver.tornado.StaticFileHandler, {"path": STATIC}),
        ],
        template_path=os.path.join(HERE, "templates"),
        **assetver.tornado.settings(
            static_path=STATIC,
            debug=debug,
            assetver_manifest=manifest or None,
            assetver_output=output or None,
            assetver_url_style=url_style,
        ),
    )


def main() -> None:
    parse_command_line()
    app = make_app(
        debug=options.debug,
        manifest=options.manifest,
        output=options.output,
        url_style=options.url_style,
    )
    sockets = tornado.netutil.bind_sockets(options.port, address=options.address)
    if options.processes != 1:
        tornado.process.fork_processes(options.processes)

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(app, xheaders=True)
        server.add_sockets(sockets)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
