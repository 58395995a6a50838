"""gunicorn settings for dialwhom: ``gunicorn -c examples/gunicorn.conf.py 'app:create_app()'``.

The same settings `dialwhom serve --workers N` uses (kept in one place, integrations/cli.py).
"""

from integrations.cli import GUNICORN_SETTINGS

globals().update(GUNICORN_SETTINGS)
bind = "0.0.0.0:8080"
