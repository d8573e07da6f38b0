"""Safe file output: atomic writes, writability checks made before any work, folder locks.

- `atomic_write(path)`: write to a temporary file in the same folder, then `os.replace` it
  onto `path` when the block ends without an error; on an error the temporary file is
  removed and `path` keeps its old content.
- `check_writable(path, flag)`: refuse, before any model is loaded, an output that is a
  folder, that lies under a file, that is read-only, or whose folder cannot be written to.
- `FolderLock(folder, purpose)`: one writer per folder. The lock file `.tokenreward.lock`
  holds the holder's pid and command; it is an `flock` held for the writer's life, so the
  kernel frees it when the holder dies (even by `kill -9`), and the next writer takes it
  over, saying whose stale lock it was. A second writer while the holder lives gets
  `FolderBusyError` naming the holder.
- `replace_folder(source, target)`: install a copy of a folder in place of another one, by
  renames: a kill at any moment leaves the old folder or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tokenreward.errors import UserInputError

LOCK_NAME = ".tokenreward.lock"


def cache_root() -> Path:
    """The project's cache folder (worlds, preference caches, converted GGUF models):
    `$XDG_CACHE_HOME/tokenreward`, else `~/.cache/tokenreward`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenreward"


class OutputError(UserInputError):
    """An output path that cannot be written (named with its flag)."""


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock."""


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A handle on a temporary sibling of `path`, renamed onto `path` when the block succeeds.

    The rename is atomic on one file system: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str) -> None:
    """`Path(path).write_text(text)`, atomically (see `atomic_write`)."""
    with atomic_write(path) as handle:
        handle.write(text)


def replace_folder(source: str | Path, target: str | Path) -> Path:
    """Make `target` a copy of the folder `source`: copy into the sibling `.NAME.new`, rename
    `target` away to `.NAME.old`, rename `.NAME.new` onto `target`, delete `.NAME.old`. A kill
    leaves `target` old or new whole (between the two renames only `.NAME.old`, which the next
    call first renames back)."""
    target = Path(target)
    staging, retired = (target.with_name(f".{target.name}.{tag}") for tag in ("new", "old"))
    if retired.is_dir() and not target.exists():
        os.replace(retired, target)  # a swap killed between its renames: the old folder comes back
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
    return target


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(".")


def check_writable(path: str | Path, flag: str, folder: bool = False) -> Path:
    """`path` as a Path, or `OutputError` saying why `flag` cannot be written there.

    `folder=True` checks an output folder (`--out`) instead of a file. A file or folder
    without any write permission bit counts as read-only even for root."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{flag} {path}: is a file, not a folder")
        if not folder and path.is_dir():
            raise OutputError(f"{flag} {path}: is a folder; give a file name")
        if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
            raise OutputError(f"{flag} {path}: is read-only")
    base = path if folder and path.is_dir() else _existing_ancestor(path)
    if not base.is_dir():
        raise OutputError(f"{flag} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK) or not base.stat().st_mode & 0o222:
        raise OutputError(f"{flag} {path}: folder {base} is read-only")
    try:
        tempfile.TemporaryFile(dir=base).close()
    except OSError as err:
        raise OutputError(f"{flag} {path}: cannot write in {base} ({err.strerror})") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
    return f"pid {holder.get('pid', '?')} ({holder.get('command', 'unknown command')}{when})"


class FolderLock:
    """`with FolderLock(folder, "world build"):` one writer per folder (see the module docstring).

    `held` tells whether this object holds the lock; `took_over` holds the stale holder's
    record when one was taken over."""

    def __init__(self, folder: str | Path, purpose: str, stream=None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.stream = stream if stream is not None else sys.stderr
        self.took_over: dict | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        import fcntl  # POSIX only; imported here so that the rest of the module works everywhere

        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder}: is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise FolderBusyError(
                    f"{self.folder} is in use by {_describe(holder)}; wait for it to finish or use another folder"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and our lock: try again
        previous = self._read(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.took_over = previous
            state = "no longer running" if not _pid_alive(int(previous["pid"])) else "no longer holding it"
            print(f"{self.folder}: taking over the stale lock of {_describe(previous)}, {state}", file=self.stream)
        record = {"pid": os.getpid(), "command": self.purpose, "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            data = os.pread(fd, 4096, 0)
            holder = json.loads(data) if data.strip() else {}
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_jsonl_for_append(path: str | Path, what: str = "records", stream=None) -> list[dict]:
    """The records of a JSONL file that is appended to and resumed.

    A torn last line (a run killed mid-write: the line does not parse) is cut off the file,
    with a message, so the next append starts on a clean line; a bad line elsewhere is an
    error naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise OutputError(f"{path}: is a folder, not a JSONL file")
    data = path.read_bytes()
    lines = data.split(b"\n")
    records, offset = [], 0
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines) or all(not rest.strip() for rest in lines[number:])
        if raw.strip():
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                if not last:
                    raise UserInputError(f"{path} line {number}: not a JSON object; the file is damaged") from None
                with path.open("r+b") as handle:
                    handle.truncate(offset)
                print(
                    f"{path}: dropped a torn last line (line {number}, {len(raw)} bytes); its {what} will be redone",
                    file=stream if stream is not None else sys.stderr,
                )
                break
        offset += len(raw) + 1
    if records and not data.endswith(b"\n") and path.stat().st_size == len(data):
        with path.open("ab") as handle:
            handle.write(b"\n")
    return records


def read_jsonl(path: str | Path, flag: str = "") -> list[dict]:
    """The JSON objects of a JSONL file (blank lines skipped); an error names the file, the
    flag it came from and the line."""
    path = Path(path)
    name = f"{flag} {path}".strip()
    if path.is_dir():
        raise UserInputError(f"{name}: is a folder, not a JSONL file")
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserInputError(f"{name}: not UTF-8 text (byte {err.start}); is it a JSONL file?") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserInputError(f"{name} line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise UserInputError(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def row_location(source: str | Path, index: int) -> str:
    """Where record `index` (0-based, blank lines skipped) of a data source is, for an error:
    `FILE line N` for a JSONL file, else `SOURCE, row N` (1-based)."""
    path = Path(str(source))
    if path.suffix == ".jsonl" and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as handle:
            lines = (number for number, line in enumerate(handle, start=1) if line.strip())
            number = next((n for k, n in enumerate(lines) if k == index), None)
        if number is not None:
            return f"{path} line {number}"
    return f"{source}, row {index + 1}"


def read_json_file(path: str | Path, fix: str = "") -> Any:
    """The JSON value in `path`; a file that does not parse is an error naming it (and `fix`)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserInputError(
            f"{path} is not valid JSON ({err}); the file is damaged{'; ' + fix if fix else ''}"
        ) from None


def damaged_file(folder: Path) -> str | None:
    """`FILE: why` for the first JSON or safetensors file of a model folder that does not
    parse (truncated, zero bytes, garbage), or None."""
    import json

    from safetensors import safe_open

    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            return f"{path} is not valid JSON ({err}); the file is damaged"
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_slice(key)
        except Exception as err:
            size = path.stat().st_size
            return f"{path} ({size} bytes) is not a complete safetensors file ({err}); it is truncated or damaged"
    return None
