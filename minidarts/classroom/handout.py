"""The teacher's record of each student copy handed out, so that grading trusts no
file of the student's.

A student copy's assignment.json lists the tasks handed out and a fingerprint of every
file outside the solution regions; grading reads both. Both sit in the student's hands:
a student could delete an unfinished task from the list, or write new fingerprints
over edited tests (the fingerprint function ships with the copy). So `assign` also
writes the manifest to the teacher's side, RECORDS inside the teacher's repository
(git ignores it, and `assign` never copies it), under a name made of its own hash,
which the copy's manifest carries as "handout". The teacher's grading reads the
tasks and fingerprints from that record (`authority`): a task taken off the copy's
list is still graded, an edit under a rewritten fingerprint is still flagged, and a
manifest that differs from its record is flagged itself. A copy whose record is not
found (written from another checkout, or its "handout" changed) is graded on its own
manifest, and flagged as such, with the tasks whose markers it still holds added.

MINIDARTS_HANDOUTS (a folder) moves the records elsewhere (the tests keep theirs in
their own temporary folders). A student grading their own copy reads no record.
"""

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

RECORDS = ".handouts"
RECORDS_ENV = "MINIDARTS_HANDOUTS"
KEY = "handout"  # the manifest's entry naming its record
_NAME = re.compile(r"^[0-9a-f]{16}$")


class RecordError(RuntimeError):
    """A record of the teacher's that cannot be read: grading stops (it is not the
    student's fault, and every copy of that handout would fail)."""


def records_folder(teacher):
    """Where the handout records of the repository `teacher` are kept."""
    return Path(os.environ.get(RECORDS_ENV) or Path(teacher) / RECORDS)


def _digest(manifest):
    text = json.dumps({k: v for k, v in manifest.items() if k != KEY}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ready(teacher):
    """Make the records' folder, before a copy is written: a folder that cannot hold
    them is refused here, not after a whole copy without its manifest is on disk."""
    folder = records_folder(teacher)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"the records of the handouts go to {folder} ({RECORDS_ENV} moves them), which "
            f"cannot be a folder: {e.strerror or e}"
        ) from None


def record(manifest, teacher):
    """Keep `manifest` (its KEY entry left out) among the teacher's records, written
    atomically, and return its name, for the copy's manifest to carry as KEY."""
    name = _digest(manifest)
    folder = records_folder(teacher)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump({k: v for k, v in manifest.items() if k != KEY}, f, indent=1)
    os.replace(tmp, folder / f"{name}.json")
    return name


def authority(manifest, teacher):
    """(the record the copy's manifest names, or None where none is found; what is
    wrong with the copy's manifest, or None). A found record is what grading trusts:
    the copy's manifest must equal it."""
    name = manifest.get(KEY)
    folder = records_folder(teacher)
    own_word = "its task list and fingerprints are the copy's own word"
    if name is None:
        return None, (
            f"it has no {KEY} entry (deleted, or a copy from before `assign` kept records): "
            f"{own_word}"
        )
    path = folder / f"{name}.json" if isinstance(name, str) and _NAME.match(name) else None
    if path is None or not path.is_file():
        return None, (
            f"its {KEY} {name!r} has no record in {folder}, which `assign` writes for each "
            f"copy (set {RECORDS_ENV} where the records are elsewhere): {own_word}"
        )
    try:
        kept = json.loads(path.read_text())
        if not (isinstance(kept.get("tasks"), list) and isinstance(kept.get("files"), dict)):
            raise ValueError("no list of tasks and table of files")
    except (OSError, ValueError, AttributeError) as e:
        raise RecordError(f"{path}: the record of a handout is damaged ({e})") from None
    keys = (set(kept) | set(manifest)) - {KEY}
    edited = sorted(k for k in keys if manifest.get(k) != kept.get(k))
    if edited:
        return kept, f"edited: its {', '.join(edited)} differ from the handout's record"
    return kept, None
