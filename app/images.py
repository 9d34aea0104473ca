"""The gallery's PNGs as the REST API sends them: read once, kept in memory (they are small and
read on every battle), and their base64 text kept beside them."""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from pathlib import Path

MAX_IMAGES = 20_000  #: PNGs (and their base64 texts) kept at most


class PngCache:
    """PNG bytes by path, least recently used first out; safe to share between threads."""

    def __init__(self, max_images: int = MAX_IMAGES) -> None:
        self.max_images = max_images
        self._bytes: OrderedDict[str, bytes] = OrderedDict()
        self._base64: dict[str, str] = {}
        self._lock = threading.Lock()

    def data(self, path: Path) -> bytes:
        """The bytes of the PNG at ``path``."""
        key = str(path)
        with self._lock:
            data = self._bytes.get(key)
            if data is not None:
                self._bytes.move_to_end(key)
                return data
        data = Path(path).read_bytes()
        with self._lock:
            self._bytes[key] = data
            while len(self._bytes) > self.max_images:
                self._bytes.popitem(last=False)
        return data

    def as_base64(self, path: Path) -> str:
        """The PNG at ``path`` as base64 text (how the API's JSON carries images)."""
        key = str(path)
        text = self._base64.get(key)
        if text is None:
            text = base64.b64encode(self.data(path)).decode()
            if len(self._base64) < self.max_images:
                self._base64[key] = text
        return text
