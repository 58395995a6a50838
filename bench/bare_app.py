"""The benchmarks' baseline: a bare Flask app answering a constant string.

Run under the same gunicorn settings and load as dialwhom (``bench/run.py`` starts it as
``'bench.bare_app:create_app()'``), it measures what Flask, Werkzeug and gunicorn cost on their
own, so the warm-path ratio shows only what dialwhom adds.
"""

from __future__ import annotations

from flask import Flask, Response

#: about the size of a real answer (owner, two team backups, fallback)
BODY = "+919800000001,+919800000002,+919800000003,+918000000000"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/exotel/dial-whom")
    def dial_whom() -> Response:
        return Response(BODY, mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    return app
