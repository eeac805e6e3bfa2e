"""A disk that fails while the registry writes a model version (for "published only after it
is completely written")."""

from __future__ import annotations

import errno
import os

__all__ = ["FailingDisk"]

ZIP = b"PK\x03\x04"
"""How a skops artifact starts: the writes that carry the model."""


class FailingDisk:
    """Wraps ``os.fdopen`` in the registry: the file receiving the artifact fails ``how``."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.real = os.fdopen
        self.failed = False

    def __call__(self, fd: int, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = self.real(fd, mode, *args, **kwargs)  # type: ignore[call-overload]
        disk = self

        class Handle:
            def __enter__(self) -> Handle:
                handle.__enter__()
                return self

            def __exit__(self, *exc: object) -> None:
                handle.__exit__(*exc)

            def write(self, data: bytes) -> int:
                if disk.how == "write" and data.startswith(ZIP):
                    handle.write(data[: len(data) // 2])  # half of it reached the disk
                    disk.failed = True
                    raise OSError(errno.ENOSPC, "No space left on device")
                if disk.how == "metadata" and data.lstrip().startswith(b"{"):
                    disk.failed = True
                    raise OSError(errno.EIO, "Input/output error")
                return int(handle.write(data))

            def flush(self) -> None:
                handle.flush()

            def fileno(self) -> int:
                return int(handle.fileno())

        return Handle()
