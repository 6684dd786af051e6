"""Atomic file writes: a reader, or a run resumed after kill -9, sees the old file or the new
one, never half of one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, durable: bool = True) -> Path:
    """Write `data` to a hidden temporary file beside `path`, fsync it (`durable`), rename it
    over `path`. The temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the user's path, not the temporary one
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file (a byte-order mark is dropped); a `DataError` naming it if it is not
    UTF-8 text. Operating-system errors (missing, unreadable) are left to the caller."""
    from defectgen.errors import DataError

    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: this {what} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None


OWNER_MARK = ".defectgen"  # in every folder a verb made: {"kind": "evaluation" | "run" | "demo"}


def claim_folder(folder: Path, kind: str, legacy=None) -> Path:
    """Make `folder` an output folder of `kind`, or refuse with a `DataError`.

    A verb writes only into a folder it created or recognises as its own: a new or empty
    folder is claimed (a hidden `.defectgen` file records the kind); a folder with that file
    must be of the same kind; a non-empty folder without it is accepted only when
    `legacy(folder)` recognises it as one defectgen wrote before the mark existed."""
    import json

    from defectgen.errors import DataError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: --out is a file; choose a folder")
    mark = folder / OWNER_MARK
    if mark.exists():
        try:
            found = parse_json(read_text(mark, "folder mark")).get("kind")
        except (OSError, ValueError, AttributeError):
            found = None
        if found != kind:
            raise DataError(
                f"{folder} is not a defectgen {kind} folder ({OWNER_MARK} says {found!r}); "
                "choose another --out"
            )
        return folder
    if folder.exists() and any(folder.iterdir()) and not (legacy and legacy(folder)):
        raise DataError(
            f"{folder} holds files defectgen did not write; choose a new or empty folder for --out"
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(mark, json.dumps({"kind": kind}) + "\n")
    return folder


def check_replaceable(path: Path, what: str, recognise, suffix: str | None = None) -> Path:
    """Refuse (a `DataError`) to write file `path` over anything that is not a `what` defectgen
    wrote: a folder, or an existing file `recognise(path)` rejects; and, with `suffix`, a name
    that does not end with it. Returns the path."""
    from defectgen.errors import DataError

    path = Path(path)
    if suffix and path.suffix.lower() != suffix:
        raise DataError(f"{path}: a {what} is written to a {suffix} file; choose a name ending in {suffix}")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a file name for the {what}")
    if path.exists() and not recognise(path):
        raise DataError(
            f"{path} exists and is not a {what}; defectgen will not overwrite it, choose another path"
        )
    return path


def starts_with(path: Path, prefix: bytes, within: int = 0) -> bool:
    """Does the file begin with `prefix` (or contain it in its first `within` bytes)?"""
    try:
        with open(path, "rb") as handle:
            head = handle.read(max(len(prefix), within))
    except OSError:
        return False
    return head.startswith(prefix) or (within > 0 and prefix in head)


def file_digest(path: Path) -> str:
    """SHA-256 prefix of a file's bytes: how a checkpoint, a guide or a judge is recognised
    (`synth.json`'s `checkpoint_sha256`, a run's `guide_sha256`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def is_torch_file(path: Path) -> bool:
    """Does `path` start like a file `torch.save` writes (a zip archive, or a legacy pickle)?"""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def parse_json(text: str | bytes):
    """`json.loads`, with a document nested too deeply for Python's parser (which raises
    RecursionError) refused as malformed: a ValueError, as for any other broken JSON."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply (no file defectgen reads is)") from None
