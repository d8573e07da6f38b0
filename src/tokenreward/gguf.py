"""GGUF files accepted wherever a model or tokenizer is taken.

`resolve_model_source(source)` returns its input unchanged unless it names a `.gguf` file, or a
folder holding exactly one `.gguf` and no `config.json`. Such a file is converted ONCE to a
Hugging Face folder (float32 model + tokenizer, `save_pretrained`) cached under
`gguf_cache_root() / <sha256 of the file>`, and that folder is returned; every later call with
the same bytes returns the cached folder without loading anything.

- Cache: `$TOKENREWARD_GGUF_CACHE` when set, else `cache_root() / "gguf"`
  (`$XDG_CACHE_HOME/tokenreward/gguf`, `~/.cache/tokenreward/gguf`).
- Concurrency: the conversion holds `fcntl.flock` on `<cache>/<sha256>.lock`, writes into a
  temporary sibling folder and `os.replace`s it into place; a process that waited on the lock
  finds the folder done and converts nothing, so data-parallel ranks convert a file once.
- Weights: dequantized to float32 (`dtype=torch.float32`); the quantization config is removed
  so the folder saves, loads and trains as an ordinary checkpoint.
- Pad token: the file's `tokenizer.ggml.padding_token_id` when it has one (Hugging Face sets
  it); otherwise the EOS token becomes the pad token (the model's `pad_token_id` follows), so
  batches can be padded and a reward head finds the last real token.
- Bad files (empty, not GGUF magic, truncated, an architecture transformers cannot read) raise
  a one-line `ValueError` naming the file and the reason, before transformers is called.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.io import cache_root

GGUF_MAGIC = b"GGUF"
CACHE_ENV = "TOKENREWARD_GGUF_CACHE"
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for this process


def gguf_cache_root() -> Path:
    """Where converted GGUF files live: `$TOKENREWARD_GGUF_CACHE`, else `cache_root() / "gguf"`."""
    return Path(os.environ[CACHE_ENV]).expanduser() if os.environ.get(CACHE_ENV) else cache_root() / "gguf"


def gguf_file_of(source: Any) -> Path | None:
    """The GGUF file `source` names: a `.gguf` path, or a folder with one `.gguf` and no
    `config.json`; None for anything else (a Hugging Face folder, a hub id, a loaded object)."""
    if not isinstance(source, (str, Path)):
        return None
    path = Path(source).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such GGUF file")
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(path.glob("*.gguf"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UserInputError(f"{source} holds {len(found)} GGUF files and no config.json ({names}); pass one file")
    return found[0] if found else None


def resolve_model_source(source: Any) -> Any:
    """`source` unchanged, or, for a GGUF file (or a folder holding one), the cached Hugging
    Face folder converted from it (converted on the first call)."""
    file = gguf_file_of(source)
    return source if file is None else converted_folder(file)


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes, streamed in chunks; remembered per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def check_gguf(path: Path) -> None:
    """Refuse an empty file, a file without the GGUF magic, and one that `gguf.GGUFReader` cannot
    map (a header or tensor data cut short), each with a one-line `ValueError` naming it."""
    from gguf import GGUFReader

    size = path.stat().st_size
    if size == 0:
        raise UserInputError(f"{path}: empty file (0 bytes), not a GGUF model")
    with open(path, "rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise UserInputError(
            f"{path}: not a GGUF file (it starts with {magic!r}, a GGUF file starts with {GGUF_MAGIC!r})"
        )
    try:
        GGUFReader(str(path))  # maps every tensor: a header or tensor data cut short does not fit
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserInputError(
            f"{path} ({size} bytes): not a complete GGUF file ({reason}); it is truncated or damaged"
        ) from err


def converted_folder(file: Path) -> Path:
    """The cached Hugging Face folder of a GGUF file, converting it under the cache lock if absent."""
    import fcntl

    sha = file_sha256(file)
    root = gguf_cache_root()
    folder = root / sha
    if (folder / "config.json").is_file():
        return folder
    check_gguf(file)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{sha}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if (folder / "config.json").is_file():  # another process converted it while we waited
            return folder
        temporary = Path(tempfile.mkdtemp(prefix=f".{sha}.", dir=root))
        try:
            _convert_announced(file, temporary, folder)
            shutil.rmtree(folder, ignore_errors=True)  # a leftover without config.json
            os.replace(temporary, folder)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return folder


def _convert_announced(file: Path, out: Path, folder: Path) -> None:
    """`convert_gguf(file, out)` under one progress line on stderr."""
    megabytes = file.stat().st_size / 1e6
    print(
        f"converting {file.name} ({megabytes:.3g} MB) to a Hugging Face folder in {folder} ...",
        end="",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    try:
        convert_gguf(file, out)
    except BaseException:
        print(" failed", file=sys.stderr, flush=True)
        raise
    print(f" done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def convert_gguf(file: Path, out: Path) -> None:
    """Write `file`'s model (dequantized float32, no quantization config) and tokenizer to `out`
    with `save_pretrained`; an architecture transformers cannot read is a one-line `ValueError`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        except Exception as err:
            raise UserInputError(_conversion_error(file, err)) from err
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))


def _conversion_error(file: Path, err: Exception) -> str:
    """One line naming the file: the unsupported architecture with the supported ones, or the loader's reason."""
    unsupported = re.search(r"architecture (\S+) is not supported", str(err))
    if unsupported:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        supported = ", ".join(sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}))
        return f"{file}: GGUF architecture {unsupported.group(1)!r} is not supported by transformers (supported: {supported})"
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{file}: transformers cannot convert this GGUF file ({type(err).__name__}: {reason})"


@contextmanager
def _quiet_transformers():
    """No progress bars, warnings or info logs from transformers while a GGUF file converts (its
    tensor-conversion bar is a plain tqdm on stderr, so stderr is held for the duration)."""
    import io
    import warnings
    from contextlib import redirect_stderr

    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
