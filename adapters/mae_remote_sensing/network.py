"""Network sources fail fast, and local hrefs stay inside the catalog.

Remote rasters are read by GDAL (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``) and remote STAC documents by
pystac; neither sets a timeout by default, so a host that accepts the connection and never answers hangs
the run forever. :func:`apply_gdal_network_settings` sets GDAL's connect and read timeouts and retries
(``GDAL_HTTP_CONNECTTIMEOUT``, ``GDAL_HTTP_TIMEOUT``, ``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY``)
from ``data.options.network_*`` in this process's environment, which loader workers inherit;
:class:`GuardedStacIO` reads STAC documents with the same limits, and refuses local hrefs that leave the
catalog root (``../../etc/passwd``) when ``data.options.stac_confine_hrefs`` is on (the default).
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pystac
from pystac.stac_io import DefaultStacIO

RETRY_DELAY_S = 1.0


class StacSourceError(ValueError):
    """A STAC document or href that cannot be used: the message names it and the cause."""


def gdal_network_config(timeout: float, connect_timeout: float, retries: int) -> dict[str, str]:
    """GDAL configuration options for remote reads (seconds; GDAL takes whole seconds, at least 1)."""
    return {"GDAL_HTTP_TIMEOUT": str(max(1, round(timeout))),
            "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(connect_timeout))),
            "GDAL_HTTP_MAX_RETRY": str(max(0, int(retries))),
            "GDAL_HTTP_RETRY_DELAY": str(RETRY_DELAY_S)}


def apply_gdal_network_settings(settings: Any) -> None:
    """Put the network limits of ``settings`` (a ``ReadSettings``) into the environment GDAL reads them from."""
    os.environ.update(gdal_network_config(settings.network_timeout, settings.network_connect_timeout,
                                          settings.network_retries))


def inside(path: str | Path, root: str | Path) -> bool:
    """``path`` resolves (symlinks followed) to ``root`` or a file below it."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def check_confined(path: str | Path, root: str | Path | None, what: str) -> None:
    """Refuse a local ``path`` outside ``root`` (None: no confinement), naming both and the option."""
    if root is not None and not inside(path, root):
        raise StacSourceError(f"{what} {path} is outside the catalog root {root}: refused (set "
                              "data.options.stac_confine_hrefs: false to read files outside it)")


class GuardedStacIO(DefaultStacIO):
    """pystac's reader with a timeout and retries for remote documents and, when ``root`` is given, local
    documents confined to it."""

    def __init__(self, timeout: float, retries: int, root: str | Path | None = None) -> None:
        super().__init__()
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.root = root

    def read_text_from_href(self, href: str) -> str:
        if "://" not in href or href.startswith("file://"):
            local = href[len("file://"):] if href.startswith("file://") else href
            check_confined(local, self.root, "STAC document")
            return super().read_text_from_href(href)
        request = urllib.request.Request(href, headers={"User-Agent": f"pystac/{pystac.__version__}", **self.headers})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read().decode("utf-8")
            except urllib.error.HTTPError as err:
                raise StacSourceError(f"STAC document {href}: HTTP {err.code} {err.reason}") from None
            except (TimeoutError, socket.timeout, urllib.error.URLError, ConnectionError) as err:
                reason = getattr(err, "reason", err)
                if attempt == self.retries:
                    raise StacSourceError(
                        f"STAC document {href}: no answer ({reason}) after {self.retries + 1} attempt(s) of "
                        f"{self.timeout:g} s (data.options.network_timeout, network_retries)") from None
        raise AssertionError("unreachable")
