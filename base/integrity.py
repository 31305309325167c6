"""Signatures a forger cannot recompute: what the product trusts on its own word.

A stage summary (the figures the report prints, the digests that make a stage current)
and an exact-EMD cache entry are files anyone can edit, and a digest beside them can be
recomputed by whoever edits them. So each carries an HMAC-SHA256 keyed by a secret the
product keeps outside every run folder: `$ECON_EMD_KEY_FILE` if set, else
`$XDG_STATE_HOME/econ-emd/key`, else `~/.local/state/econ-emd/key`, made (0600, 32 random
bytes) on first use. A summary or entry whose signature does not verify is not trusted:
the stage is not current and is rebuilt, the entry is recomputed.

A consequence: a run folder copied to another user or machine (another key) is not trusted
there; its stages are recomputed on their first run, and signed with that key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from .errors import UserError

#: the environment variable naming the key file (tests, shared accounts)
KEY_ENV = "ECON_EMD_KEY_FILE"
KEY_BYTES = 32
#: the field of a signed JSON document holding its signature
SIGNATURE_FIELD = "signature"

_key: tuple[Path, bytes] | None = None


def key_path() -> Path:
    """Where the product's signing key lives (see the module docstring)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "econ-emd" / "key"


def _load_or_create(path: Path) -> bytes:
    """The key in `path`, made first if there is none; two processes making it at once
    agree on one (the file is linked into place only if it does not exist yet)."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    except OSError as exc:
        raise UserError(f"{path}: cannot read the product's signing key ({exc.strerror}); "
                        f"set {KEY_ENV} to a readable file") from None
    if len(key) >= KEY_BYTES:
        return key
    if key:
        raise UserError(f"{path}: the product's signing key is damaged ({len(key)} bytes); remove it "
                        "(stages of earlier runs are then recomputed)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)            # fails if another process made it first: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot create the product's signing key ({exc.strerror}); "
                        f"set {KEY_ENV} to a file in a writable place") from None


def _secret() -> bytes:
    global _key
    path = key_path()
    if _key is None or _key[0] != path:
        _key = (path, _load_or_create(path))
    return _key[1]


def sign_bytes(data: bytes) -> str:
    """HMAC-SHA256 of `data` under the product's key (hex)."""
    return hmac.new(_secret(), data, hashlib.sha256).hexdigest()


def bytes_verify(data: bytes, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign_bytes(data), signature)


def _canonical(document: dict) -> bytes:
    body = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def sign_document(document: dict) -> dict:
    """`document` (JSON values only) with its signature field added."""
    return {**document, SIGNATURE_FIELD: sign_bytes(_canonical(document))}


def document_verifies(document: object) -> bool:
    """A JSON object whose signature field is the product's signature of the rest."""
    return isinstance(document, dict) and bytes_verify(_canonical(document), document.get(SIGNATURE_FIELD))
