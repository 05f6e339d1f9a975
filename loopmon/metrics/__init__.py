"""Prometheus metrics from a producer's snapshots: the collector and the ``/metrics`` endpoint.

``collector`` turns the latest snapshot into metric families (prometheus_client, the
``metrics`` extra, imported only there and in ``exporter``); ``endpoint`` is the small HTTP
server on the producer's own loop (standard library only); ``access`` decides who may scrape
(loopback, or a bearer token); ``exporter`` composes them for ``serve`` and ``run``, and
``options`` holds their command-line options. This module itself imports nothing third-party,
so a command can say how to install the extra instead of failing on an import.
"""

from __future__ import annotations

INSTALL_HINT = "--metrics needs prometheus_client: pip install 'loopmon[metrics]'"


class MetricsError(Exception):
    """Metrics cannot be served as asked: a one-line reason a user can act on."""


def require() -> None:
    """``MetricsError`` with the install line unless prometheus_client imports."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MetricsError(INSTALL_HINT) from None
