"""Run folders: never overwrite a run, one process per run, files a crash cannot
leave half-written.

A new run (search, train, a sweep's output) claims its folder with claim_folder:
a folder that already holds files is refused, naming the ways out (--resume,
another --name, --overwrite, which moves the old folder aside and loses nothing).
Default names carry the time and get a suffix -2, -3, ... when two runs start in
the same second. A running or resuming process holds RunLock(folder), a lock file
with its pid: a second process on the same folder is refused, and a lock left by a
process that died is taken over (by one process, when several try at once).
write_text writes a file atomically (temporary file, fsync, rename) with the
permissions 0666 & ~umask a plain open() would give.
"""

import contextlib
import glob
import os
import tempfile
import time

LOCK = ".lock"
TMP_PREFIX = ".tmp-"


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (it holds a run, or is locked)."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode():
    """The mode a new file gets from open(): 0666 without the process's umask."""
    return 0o666 & ~_umask()


def default_folder(out, prefix):
    """out/PREFIX-DATE-TIME, with -2, -3, ... appended while that name is taken."""
    base = os.path.join(out, time.strftime(f"{prefix}-%Y%m%d-%H%M%S"))
    folder, n = base, 1
    while os.path.exists(folder):
        n += 1
        folder = f"{base}-{n}"
    return folder


def _aside(folder):
    n = 1
    while os.path.exists(f"{folder}.old-{n}"):
        n += 1
    return f"{folder}.old-{n}"


def _resumable(folder, what):
    """Whether `folder` holds a checkpoint a `what` ("search run", "retraining run") can
    continue: a run stopped before its first epoch's end has none, and a run of the
    other kind has its own (config.json's format, e.g. minidarts-search-1)."""
    import json

    if not os.path.isfile(os.path.join(folder, "checkpoint.npz")):
        return False
    try:
        with open(os.path.join(folder, "config.json")) as f:
            kind = json.load(f)["format"].split("-")[1]
    except (OSError, ValueError, KeyError, IndexError, AttributeError, TypeError):
        return True  # unreadable here: --resume says what is wrong with it
    return kind == {"search run": "search", "retraining run": "train"}.get(what)


def claim_folder(folder, overwrite=False, what="run"):
    """Make `folder` ready for a new `what` (a run, a sweep): create it, or accept it
    empty. A folder that holds files is refused (RunFolderError) unless overwrite,
    which renames it to FOLDER.old-N first. A path that is a file is refused.
    Returns the folder it moved aside, or None."""
    is_run = what.endswith("run")  # a run has a --name and can be resumed; a report not
    if os.path.isfile(folder):
        where = "--name/--out" if is_run else "--out"
        raise RunFolderError(f"{folder} is a file, not a folder: choose another {where}")
    moved = None
    if os.path.isdir(folder) and os.listdir(folder):
        with _one_taker_at_a_time(folder):  # no run takes it between the check and the move
            moved = _claim_full(folder, overwrite, what, is_run)
    os.makedirs(folder, exist_ok=True)
    return moved


def _claim_full(folder, overwrite, what, is_run):
    """claim_folder's folder that holds files: refused, or moved aside (returned)."""
    refuse_if_in_use(folder)  # before --overwrite moves a live run's folder away
    if not overwrite:
        names = sorted(os.listdir(folder))
        held = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        ways = "choose another --name, or " if is_run else ""
        if is_run and _resumable(folder, what):
            ways = f"continue the run in it with --resume {folder}, {ways}"
        raise RunFolderError(
            f"{folder} is not empty ({held}): a new {what} would overwrite it; {ways}"
            f"pass --overwrite to move it aside to {_aside(folder)} first"
        )
    moved = _aside(folder)
    os.rename(folder, moved)
    return moved


def check_folder_name(name, source, what="name"):
    """A run's or experiment's `--name`: a folder of its own inside --out, returned
    normalised ("a/" is "a"). Not empty, ".", ".." and above, or an absolute path, which
    would put it in --out itself or outside it (and --overwrite would move that aside)."""
    normal = os.path.normpath(name)
    outside = normal in (".", "..") or normal.startswith(".." + os.sep) or os.path.isabs(normal)
    if outside or os.path.splitdrive(normal)[0] or not name.strip():
        raise ValueError(
            f"{source}: {what} must name a folder of its own inside --out, got {name!r} "
            "(leave it out for the default name)"
        )
    return normal


def check_experiment_folder(folder):
    """An experiment continues in its folder when run again, so it accepts one that
    holds files; not a file, nor a single run's folder (its config.json), where its
    searches would land beside that run's files."""
    if os.path.isfile(folder):
        raise RunFolderError(f"{folder} is a file, not a folder: choose another --name/--out")
    if os.path.isfile(os.path.join(folder, "config.json")):
        raise RunFolderError(
            f"{folder} holds a run (its config.json), not an experiment: choose another "
            "--name or --out"
        )


def prepare_folder(folder, fresh, overwrite=False, what="run"):
    """Before a run takes its folder's lock: claim the folder if the run is new (fresh),
    else make sure it exists. The temporaries an interrupted write left are deleted by
    RunLock once it holds the folder: before that they may be a live process's writes."""
    if fresh:
        claim_folder(folder, overwrite, what)
    else:
        os.makedirs(folder, exist_ok=True)


def remove_stale_temporaries(folder):
    """Delete the temporary files an interrupted write left in `folder`."""
    for path in glob.glob(os.path.join(folder, TMP_PREFIX + "*")):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def say_if_finished(log, command, folder, epoch, epochs):
    """A finished run resumed as it was does nothing: say so, and how to extend it."""
    if epoch >= epochs:
        log(
            f"{command}: finished ({epoch}/{epochs} epochs); to run longer, --resume {folder} "
            f"--epochs N with N > {epochs}"
        )


def in_use_by(folder):
    """The pid of the live process (not this one) whose lock `folder` holds, or None
    (no lock, or a stale one left by a process that died): asked before anything
    touches a folder a live run may be writing to (RunLock, --overwrite)."""
    try:
        with open(os.path.join(folder, LOCK)) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and pid != os.getpid() and _alive(pid) else None


def refuse_if_in_use(folder):
    """RunFolderError if a live process holds `folder`'s lock: moving its folder aside
    (--overwrite) or running beside it would mix two runs' files."""
    pid = in_use_by(folder)
    if pid is not None:
        raise RunFolderError(
            f"{folder} is in use by another process (pid {pid}); wait for it to finish, "
            f"or stop it first (its lock: {os.path.join(folder, LOCK)})"
        )


LAST_LOCKED = []  # [the folder of the run this process locked last]


def _create_with_pid(path):
    """Create `path` holding this process's pid, or return False if it exists. The file
    appears with its pid in it (written aside, then linked): created empty and written
    after, a second process could read it empty in between, take it as stale, and
    take the lock too. Where the file system has no hard links, O_EXCL."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.chmod(tmp, file_mode())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return True
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:  # the lock's new holder cleaned its folder meanwhile
            pass


TAKE_TIMEOUT_S = 30.0  # a taker judges a lock in milliseconds: one stuck longer is stopped


@contextlib.contextmanager
def _one_taker_at_a_time(folder):
    """While `folder`'s lock file is judged and taken, or the folder moved aside
    (--overwrite), no other process does either: an OS lock (flock) on the folder itself,
    which the system drops when its process dies, so it is never stale. Without it, two
    processes could both judge a dead process's lock stale, and the slower delete the
    lock the faster had just taken, both then writing to one run. Yields False where the
    folder was renamed while this waited (its holder moved it aside: the caller looks
    again), else True. Where there is no flock (Windows) or the file system refuses it
    (some network mounts), the takers go unserialised, as before."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # no flock here, or a folder this user cannot open
        yield True
        return
    try:
        waited = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # another taker, for milliseconds
                if waited > TAKE_TIMEOUT_S:  # stopped (Ctrl-Z) in the middle of taking it
                    raise RunFolderError(
                        f"{folder}: another process has been taking its lock for "
                        f"{TAKE_TIMEOUT_S:.0f} s; is one stopped? Try again once it is gone"
                    ) from None
                time.sleep(0.005)
                waited += 0.005
            except OSError:  # refused by the file system: unserialised
                break
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(folder))
        except OSError:  # moved aside and not made again
            same = False
        yield same
    finally:
        os.close(fd)  # drops the flock


class RunLock:
    """`with RunLock(folder):` one process at a time in a run folder. The lock file
    holds the owner's pid; a lock whose process is gone is stale and taken over (by
    one process only: _one_taker_at_a_time)."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK)
        self.held = False

    def acquire(self):
        """Take the lock (refusing a live holder, taking over a dead one's), then delete
        the temporaries an interrupted write left: no other process writes here now."""
        for _ in range(3):  # again where --overwrite moved the folder aside meanwhile
            os.makedirs(self.folder, exist_ok=True)
            with _one_taker_at_a_time(self.folder) as unmoved:
                if unmoved and self._take():
                    remove_stale_temporaries(self.folder)  # no other process writes here
                    return self
        raise RunFolderError(f"{self.folder}: could not take the lock {self.path}")

    def _take(self):
        """Create the lock file, refusing a live holder and removing a dead one's."""
        for _ in range(2):
            if _create_with_pid(self.path):
                self.held = True
                LAST_LOCKED[:] = [self.folder]  # what an interrupted command names
                return True
            refuse_if_in_use(self.folder)
            try:
                os.remove(self.path)  # stale: its process died
            except FileNotFoundError:  # its process just released it
                pass
        return False

    def release(self):
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def write_text(path, text):
    """Write `text` to `path` atomically, with the mode a plain open() gives."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=".txt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_config_file(folder, saved):
    """A run continues with the settings its checkpoint holds (`saved`), and writes
    config.json again from them: a hand edit of config.json would have no effect and
    be undone without a word. Refused, naming the first key edited (a missing or
    unreadable config.json is simply written again; --epochs may change)."""
    import json

    path = os.path.join(folder, "config.json")
    try:
        with open(path) as f:
            written = json.load(f)
    except (OSError, ValueError):
        return
    saved = json.loads(json.dumps(saved))  # as config.json would hold them
    keys = set(written) & set(saved) - {"epochs"} if isinstance(written, dict) else ()
    for key in sorted(k for k in keys if written[k] != saved[k]):
        raise ValueError(
            f"--resume {folder}: config.json was edited ({key} is {written[key]!r} there, "
            f"{saved[key]!r} in the checkpoint); a run continues with the settings it was made "
            "with: put config.json back, or start a new run with the change"
        )


def write_config(folder, cfg, fmt):
    """config.json: every setting of the run, the format of its checkpoints (`fmt`)
    and what produced it (provenance.py)."""
    import json

    from .provenance import provenance

    record = {**cfg.to_dict(), "format": fmt, "produced_by": provenance(cfg.device)}
    write_text(os.path.join(folder, "config.json"), json.dumps(record, indent=1))


__all__ = [
    "RunFolderError",
    "RunLock",
    "check_config_file",
    "check_experiment_folder",
    "claim_folder",
    "default_folder",
    "file_mode",
    "in_use_by",
    "prepare_folder",
    "refuse_if_in_use",
    "remove_stale_temporaries",
    "write_config",
    "write_text",
]
