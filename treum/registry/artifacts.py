"""Content-addressed artifact store: ``<root>/<sha256 of manifest>/``.

An artifact's address is the SHA-256 of its manifest, and the manifest holds the
SHA-256 of every file, so a changed byte anywhere changes or breaks the address.
``get`` verifies before it hands a path out.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from treum.core.errors import ArtifactIntegrityError
from treum.core.model import manifest_digest, verify_artifact


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, source: Path) -> tuple[str, Path]:
        """Copy a saved model in; returns (sha256, path). Storing the same content twice is a no-op."""
        verify_artifact(source)
        digest = manifest_digest(source)
        dest = self.root / digest
        if dest.exists():
            verify_artifact(dest)
            return digest, dest
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".incoming-"))
        try:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            tmp.rename(dest)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return digest, dest

    def get(self, digest: str) -> Path:
        """The verified directory of an artifact."""
        path = self.root / digest
        if not path.is_dir():
            raise ArtifactIntegrityError(f"artifact {digest[:12]}... is not in the store at {self.root}")
        verify_artifact(path)
        actual = manifest_digest(path)
        if actual != digest:
            raise ArtifactIntegrityError(
                f"artifact {digest[:12]}...: its manifest now hashes to {actual[:12]}...; "
                "the manifest was edited after the artifact was stored, refusing to load it"
            )
        return path

    @staticmethod
    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
