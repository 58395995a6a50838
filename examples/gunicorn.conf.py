"""gunicorn settings for dialwhom: ``gunicorn -c examples/gunicorn.conf.py 'dialwhom.app:create_app()'``.

The same settings `dialwhom serve --workers N` uses (kept in one place, cli.py).
"""

from dialwhom.cli import GUNICORN_SETTINGS

globals().update(GUNICORN_SETTINGS)
bind = "0.0.0.0:8080"
