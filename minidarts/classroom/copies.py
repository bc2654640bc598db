"""Reading the student copies that `python -m minidarts grade` grades: each copy's
tasks, solution regions and edits outside them (StudentCopy), the folders that are no
copy (they fail alone: read_copies), a name for each copy (name_apart), and a report
folder kept apart from them (out_apart)."""

import json
import os
from pathlib import Path, PurePosixPath

from . import handout
from .assign import MANIFEST, TASKS, RegionError, _is_tool, find_student_regions, fingerprint

TASK_IDS = tuple(t for t, _, _ in TASKS)


class NotACopy(ValueError):
    """A folder that is no student copy, or whose assignment.json is damaged; `reason`
    says which, without the folder's path."""

    def __init__(self, folder, reason):
        super().__init__(f"{folder}: {reason}")
        self.reason = reason


class StudentCopy:
    """A student copy read from disk: its tasks, its regions, its edits outside them.
    `teacher`: the repository whose records of the copies it handed out (handout.py)
    grading trusts over the copy's assignment.json; None for a student's own copy."""

    def __init__(self, folder, teacher=None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise NotACopy(
                folder,
                f"not a student copy (it has no {MANIFEST}: not a folder written by "
                "python -m minidarts assign, or the file was deleted)",
            )
        trusted, problem = None, None
        try:
            data = json.loads(manifest.read_text())
            if not isinstance(data, dict):
                raise TypeError(f"a {type(data).__name__}, not an object")
            if teacher is not None:  # a damaged record stops the grading: not the copy's
                try:
                    trusted, problem = handout.authority(data, teacher)
                except handout.RecordError as e:
                    raise handout.RecordError(
                        f"{e}, the record {manifest} names: restore it, or delete it to grade "
                        "the copies of that handout on their own word (flagged)"
                    ) from None
            data = trusted if trusted is not None else data
            self.tasks = [t for t in data["tasks"] if t in TASK_IDS]
            self.prints = dict(data["files"])
        except (ValueError, KeyError, TypeError) as e:
            raise NotACopy(folder, f"{MANIFEST} damaged ({e}); write the copy again") from None
        self.name = self.folder.resolve().name
        # the task list is the teacher's record's (or, graded by its student, its own)
        self.recorded = teacher is None or trusted is not None
        self.regions, self.damaged = {}, {}
        self.outside_edits = [f"{MANIFEST} ({problem})"] if problem else []
        for rel, expected in sorted(self.prints.items()):
            path = self.folder / rel
            link = _link_out(self.folder, rel)
            if link:  # its text is a file outside the copy (a classmate's): not read
                self.outside_edits.append(f"{rel} (a link to {os.path.realpath(link)})")
                self.damaged[rel] = f"{rel} is a link to a file outside the copy"
                continue
            if path.is_file() and path.stat().st_nlink > 1:  # may be a classmate's file too
                self.outside_edits.append(f"{rel} (a hard link: one of {path.stat().st_nlink})")
            if not path.is_file():
                self.outside_edits.append(f"{rel} (missing)")
                continue
            data = path.read_bytes()
            try:
                if fingerprint(data, rel) != expected:
                    self.outside_edits.append(rel)
                if rel.endswith(".py") and not _is_tool(Path(rel)):
                    self._read_regions(rel, data.decode("utf-8", errors="replace"))
            except RegionError as e:
                self.outside_edits.append(f"{rel} (markers damaged)")
                self.damaged[rel] = str(e)
        self.from_markers = []
        if teacher is not None and trusted is None:
            # no record to say what was handed out: a task whose markers the copy holds
            # is graded, whether or not its assignment.json lists it (its line says so)
            self.from_markers = [t for t in self.regions if t not in self.tasks]
            self.tasks = [t for t in TASK_IDS if t in self.tasks or t in self.regions]

    def _read_regions(self, rel, text):
        lines = text.splitlines(keepends=True)
        for task, begin, end in find_student_regions(text, rel):
            self.regions.setdefault(task, []).append((rel, lines[begin + 1 : end]))


def _link_out(folder, rel):
    """The first symbolic link on the path from `folder` to its file `rel` that leads
    outside the folder, or None."""
    path, inside = Path(folder), os.path.realpath(folder) + os.sep
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink() and not os.path.realpath(path).startswith(inside):
            return path
    return None


def _same(a, b):
    """Whether two paths are one folder: by device and inode where both exist (on a
    case-insensitive disk Subs/Alice is subs/alice), else as resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


def out_apart(out, students):
    """Refuse a report folder that holds a student's work: --overwrite would move it
    aside (and the grading then find the copy gone). `out` may sit inside a copy (a
    student grading their own copy writes grades/ there), but not be one, hold one,
    or hold a file its assignment.json lists."""
    o = Path(out).resolve()
    for student in students:
        s = Path(student).resolve()
        if _same(o, s) or any(_same(o, p) for p in s.parents):
            what = "is" if _same(o, s) else "holds"
            raise ValueError(
                f"--out {out} {what} the student copy {student}: write the report elsewhere"
            )
        if any(_same(s, p) for p in o.parents):
            try:
                listed = json.loads((s / MANIFEST).read_text())["files"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a copy: grade() names what is wrong with it
            inside = sorted(rel for rel in listed if any(_same(o, p) for p in (s / rel).parents))
            if inside:
                raise ValueError(
                    f"--out {out} holds {inside[0]} of the student copy {student}: write "
                    "the report elsewhere"
                )


def name_apart(copies):
    """Give each copy a name of its own: its folder's name, and where copies share it
    (submissions/alice/repo, submissions/bob/repo) as many parent folders as tell them
    apart (alice/repo, bob/repo). The same folder given twice is refused."""
    seen = {}
    for copy in copies:
        if isinstance(copy, Unreadable):  # the same path (two links to one are two)
            where = os.path.abspath(copy.folder)
        else:
            st = copy.folder.stat()
            where = (st.st_dev, st.st_ino)  # the same folder however it is spelled
        if where in seen:
            raise ValueError(f"{copy.folder}: given twice (as {seen[where]} too)")
        seen[where] = copy.folder
    # the path's parts, its anchor (/, C:\\) as a plain name: a name is a log folder
    where = [
        Path(os.path.abspath(c.folder)) if isinstance(c, Unreadable) else c.folder.resolve()
        for c in copies
    ]
    parts = [tuple(p.strip("/\\").replace(":", "") or "root" for p in w.parts) for w in where]
    depth = [1] * len(copies)
    for _ in range(max(map(len, parts), default=0)):
        names = [str(PurePosixPath(*p[-d:])) for p, d in zip(parts, depth)]
        clash = [i for i, n in enumerate(names) if names.count(n) > 1]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    else:
        names = [str(PurePosixPath(*p[-d:])) for p, d in zip(parts, depth)]
    # paths that differ only in how their anchor reads as a name: numbered
    names = [n if names.count(n) == 1 else f"{n}-{i + 1}" for i, n in enumerate(names)]
    for copy, name in zip(copies, names):
        copy.name = name


class Unreadable:
    """A folder among the copies that is not a copy, or whose assignment.json is
    damaged: it fails every task, and the others are graded."""

    tasks, regions, outside_edits = (), {}, ("not read: the folder is no copy",)
    recorded, from_markers = True, ()

    def __init__(self, folder, error):
        self.folder, self.error = Path(folder), error  # error: a NotACopy


def read_copies(students, teacher):
    """StudentCopy of each folder, every one read before any runs. A path that does
    not exist is an error (a typing mistake); a file, a link to another copy given, a
    folder that is no copy or whose assignment.json is damaged is Unreadable, unless
    none of them is a copy. A link inside a copy to a file outside it is flagged, and
    the regions in it not read; a hard-linked file is flagged."""
    copies, real = [], [os.path.realpath(s) for s in students]
    for i, (folder, target) in enumerate(zip(students, real)):
        try:
            others = [s for k, (s, r) in enumerate(zip(students, real)) if r == target and k != i]
            if Path(folder).is_symlink() and others:  # another student's folder, renamed
                raise NotACopy(folder, f"a link to {target}, given as {others[0]} too")
            if Path(folder).exists() and not Path(folder).is_dir():
                raise NotACopy(folder, "a file, not a student copy")
            copies.append(StudentCopy(folder, teacher))
        except NotACopy as e:
            copies.append(Unreadable(folder, e))
    if copies and all(isinstance(c, Unreadable) for c in copies):
        raise copies[0].error
    return copies
