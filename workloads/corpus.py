"""The `stdlib` corpus: real text that is on every machine — the running interpreter's own
standard-library source (`sysconfig.get_paths()["stdlib"]`), read at run time, no network.

Subset (deterministic): every `*.py` in STDLIB_PACKAGES, plus the public top-level modules
(`Lib/*.py` not starting with `_` — which also drops the build-specific `_sysconfigdata_*` —
without STDLIB_SKIP: modules removed in 3.12 / 3.13 and jokes), never inside a test directory;
330 files, 6.9 MB on CPython 3.11.7. Files are taken in sorted POSIX-path order, each preceded
by the line `# file: <path>`; the SHA-256 of that byte stream identifies the corpus
(`stdlib_manifest()`: interpreter, file count, bytes, hash). Patch releases edit these files, so
corpora of different Python versions differ: ten_lm records the hash as its `stdlib_sha256`
knob (MLflow shows it with every trial) and every worker checks it (`stdlib_problem`).

Train/val split **by file**: files, ordered by the SHA-256 of their path (stable whatever other
files exist), go to validation until it holds `val_fraction` of the bytes; the rest trains.
Validation text is therefore text the model never saw, not the tail of a file it trained on.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import sysconfig
from typing import Any

import numpy as np

from workloads.knobs import ConfigError

STDLIB_PACKAGES = ("asyncio", "collections", "concurrent", "email", "html", "http", "importlib",
                   "json", "logging", "multiprocessing", "re", "sqlite3", "tomllib", "unittest",
                   "urllib", "wsgiref", "xml", "xmlrpc", "zoneinfo")
STDLIB_SKIP = frozenset({  # top-level modules left out: removed in 3.12 / 3.13 (PEP 594), jokes
    "aifc", "asynchat", "asyncore", "cgi", "cgitb", "chunk", "crypt", "imghdr", "imp",
    "mailcap", "nntplib", "pipes", "smtpd", "sndhdr", "sunau", "telnetlib", "uu", "xdrlib",
    "antigravity", "this"})
TEST_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__"})


def stdlib_files(root: str | None = None) -> list[str]:
    """The corpus's files: sorted POSIX paths relative to the stdlib directory."""
    root = root or sysconfig.get_paths()["stdlib"]
    out = [n for n in os.listdir(root) if n.endswith(".py") and not n.startswith("_")
           and n[:-3] not in STDLIB_SKIP and os.path.isfile(os.path.join(root, n))]
    for pkg in STDLIB_PACKAGES:
        for d, dirs, files in os.walk(os.path.join(root, pkg)):
            dirs[:] = [x for x in dirs if x not in TEST_DIRS]
            rel = os.path.relpath(d, root).replace(os.sep, "/")
            out += [f"{rel}/{f}" for f in files if f.endswith(".py")]
    return sorted(out)


@functools.lru_cache(maxsize=2)
def stdlib_documents(root: str | None = None) -> tuple[tuple[str, bytes], ...]:
    """((path, b"# file: <path>\n" + source), ...) in sorted path order."""
    root = root or sysconfig.get_paths()["stdlib"]
    docs = []
    for rel in stdlib_files(root):
        with open(os.path.join(root, *rel.split("/")), "rb") as f:
            docs.append((rel, b"# file: " + rel.encode() + b"\n" + f.read()))
    if not docs:
        raise ConfigError(f"knob 'corpus': no standard-library sources under {root!r}")
    return tuple(docs)


@functools.lru_cache(maxsize=2)
def stdlib_manifest(root: str | None = None) -> dict:
    """What identifies the stdlib corpus: interpreter, file count, bytes, SHA-256 of the stream."""
    docs = stdlib_documents(root)
    h = hashlib.sha256()
    for _, doc in docs:
        h.update(doc)
    return {"python": f"{platform.python_implementation()} {platform.python_version()}",
            "files": len(docs), "bytes": sum(len(d) for _, d in docs), "sha256": h.hexdigest()}


def stdlib_split(val_fraction: float, corpus_bytes: int = 0, root: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) uint8 streams of the stdlib corpus, split by file (see the module doc).
    corpus_bytes > 0 caps the total: train keeps its first (1 − val_fraction)·cap bytes, val
    its first val_fraction·cap."""
    docs = stdlib_documents(root)
    total = sum(len(d) for _, d in docs)
    val_paths, held = set(), 0
    for rel, doc in sorted(docs, key=lambda p: hashlib.sha256(p[0].encode()).hexdigest()):
        if held >= val_fraction * total:
            break
        val_paths.add(rel)
        held += len(doc)
    parts = ([d for r, d in docs if r not in val_paths], [d for r, d in docs if r in val_paths])
    train, val = (np.frombuffer(b"".join(p), dtype=np.uint8) for p in parts)  # read-only views
    if corpus_bytes:
        cut = int(round(corpus_bytes * (1.0 - val_fraction)))
        train, val = train[:cut], val[:corpus_bytes - cut]
    return train, val


def stdlib_sha256_knob() -> Any:
    """A str knob whose default is this interpreter's stdlib corpus SHA-256, computed when the
    knobs are built — so the sweep driver's value reaches MLflow and every worker's check."""
    def this_interpreters() -> str:  # '' (unchecked) where there is no stdlib source at all
        try:
            return stdlib_manifest()["sha256"]
        except (ConfigError, OSError):
            return ""

    return dataclasses.field(default_factory=this_interpreters, metadata={
        "domain": None, "alias": None, "help": "expected stdlib corpus SHA-256 (a prefix will "
        "do; '' = unchecked); default: this interpreter's"})


def stdlib_problem(expected: str) -> str | None:
    """One line if this interpreter's stdlib corpus is not the `expected` hash (prefix)."""
    if not expected:
        return None
    try:
        m = stdlib_manifest()
    except (ConfigError, OSError) as e:
        return str(e)
    if m["sha256"].startswith(expected.lower()):
        return None
    return (f"knob 'stdlib_sha256': this interpreter's stdlib corpus ({m['python']}, "
            f"{m['files']} files) is {m['sha256']}, not {expected[:64]!r} — a different Python "
            f"version; '' accepts any")
