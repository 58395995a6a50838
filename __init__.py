"""dialwhom: sticky call routing for Exotel's Connect applet.

The layout, inner to outer (imports flow inward only)::

    dialwhom.routing        the core: config, rules, plans, caches, breaker, errors, ports
    dialwhom.integrations   the connector contract, HTTP layer, registry, built-in connectors
    dialwhom.sdk            the public surface for connector authors (dialwhom.testing: the kit)
    dialwhom.app            the web app (Flask): Exotel's and operators' endpoints
    dialwhom.cli            the ``dialwhom`` command; dialwhom.simulator plays Exotel
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dialwhom")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
