"""Attachment content (photos, documents): a small storage interface and its local-disk implementation.

Content is addressed by tenant and SHA-256, so a retried upload writes nothing new, two records
that hold the same photo share it, and a version that lost a conflict (keep_both) keeps its bytes.
The metadata lives in the ``attachments`` table; this module never touches the database.

``Settings.attachment_storage`` picks the implementation: ``local`` (the default, files under
``attachment_dir`` or ``<data_dir>/attachments``), or ``module:factory``, a callable taking the
settings and returning an :class:`AttachmentStorage` (an object store, say).
"""

import asyncio
import hashlib
import importlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from config import Settings
from schema.ids import check_tenant_id

__all__ = ["AttachmentStorage", "LocalDiskStorage", "build_storage", "sha256_hex"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AttachmentStorage(ABC):
    """Where attachment bytes go. Keys are (tenant, sha256); writes of the same key are idempotent."""

    @abstractmethod
    async def put(self, tenant_id: str, sha256: str, data: bytes) -> None: ...

    @abstractmethod
    async def get(self, tenant_id: str, sha256: str) -> bytes | None:
        """The content, or None if it was never stored."""

    @abstractmethod
    async def exists(self, tenant_id: str, sha256: str) -> bool: ...


class LocalDiskStorage(AttachmentStorage):
    """Files ``<root>/<tenant>/<sha[:2]>/<sha>``, written to a temp file and renamed (never half a file)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, tenant_id: str, sha256: str) -> Path:
        # Both parts are validated: neither can climb out of the root.
        if not _SHA256.match(sha256):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return self.root / check_tenant_id(tenant_id) / sha256[:2] / sha256

    async def put(self, tenant_id: str, sha256: str, data: bytes) -> None:
        if sha256_hex(data) != sha256:
            raise ValueError("content does not match its sha256")
        await asyncio.to_thread(self._write, self._path(tenant_id, sha256), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, tenant_id: str, sha256: str) -> bytes | None:
        path = self._path(tenant_id, sha256)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def exists(self, tenant_id: str, sha256: str) -> bool:
        return await asyncio.to_thread(self._path(tenant_id, sha256).is_file)


def build_storage(settings: Settings) -> AttachmentStorage:
    """The storage ``settings.attachment_storage`` names."""
    spec = settings.attachment_storage
    if spec == "local":
        return LocalDiskStorage(Path(settings.attachment_dir or Path(settings.data_dir) / "attachments"))
    module_name, _, factory = spec.partition(":")
    if not module_name or not factory:
        raise ValueError(f"attachment_storage must be 'local' or 'module:factory', not {spec!r}")
    storage = getattr(importlib.import_module(module_name), factory)(settings)
    if not isinstance(storage, AttachmentStorage):
        raise TypeError(f"{spec} did not return an AttachmentStorage")
    return storage
