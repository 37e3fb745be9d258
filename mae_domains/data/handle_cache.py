"""Open file handles kept per process: readers of large archives (GeoTIFF scenes, OME-TIFF plates)
re-open the same files for every chip or crop, which costs more than reading the window itself."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable


class HandleCache:
    """Open handles of this process, the least recently used closed first; emptied after a fork, so
    loader workers never share a file position (or GDAL state) with their parent."""

    def __init__(self, opener: Callable[[str], Any], max_open: int = 64) -> None:
        self.opener = opener
        self.max_open = max_open
        self.handles: OrderedDict[str, Any] = OrderedDict()
        self.pid = os.getpid()

    def get(self, key: str) -> Any:
        """The open handle of ``key``, opened on first use."""
        if self.pid != os.getpid():  # inherited from the parent process
            self.handles = OrderedDict()
            self.pid = os.getpid()
        handle = self.handles.get(key)
        if handle is not None:
            self.handles.move_to_end(key)
            return handle
        handle = self.opener(key)
        self.handles[key] = handle
        while len(self.handles) > self.max_open:
            _, old = self.handles.popitem(last=False)
            close_handle(old)
        return handle

    def clear(self) -> None:
        """Close every handle."""
        for handle in self.handles.values():
            close_handle(handle)
        self.handles.clear()


def close_handle(handle: Any) -> None:
    close = getattr(handle, "close", None)
    if close is not None:
        close()
