"""Byte-level data for the ten_lm workload: real text from the standard library (default), a file
named in the config, or a generated corpus.

* `corpus: stdlib` — the Python standard library's own source text: workloads/corpus.py.
* A `.npy` file holds a 1-D array of integer tokens in [0, 256) (a pre-tokenized byte stream);
  any other file is read as raw bytes (UTF-8 text is just bytes to a byte-level model).
* With no file, `generate_corpus(n_bytes, seed)` writes a synthetic English-like text with
  structure at several time scales, so that HTEN's coarse scales have something to find:

    ~1–10 bytes      words spelled from a fixed lexicon of consonant-vowel syllables
    ~10–100 bytes    sentences: words follow a topic-specific Markov chain, capitalised, ended
                     by the topic's own punctuation
    ~100–1000 bytes  paragraphs of 2–5 sentences; every line starts with a line counter that
                     increments through the section
    ~1–4 KB          sections: a header names the topic and a serial number, and the footer
                     repeats both — predicting it needs a memory of the whole section

  The corpus depends only on (n_bytes, seed): `random.Random` is stable across Python versions,
  so every trial of a sweep, and every rank, sees the same bytes. Nothing is downloaded.
* `unigram`, `make_probes`, `entropy_bits`: a stream's byte distribution, i.i.d. probe
  sequences drawn from it (ten_lm's content-free probes), and its entropy.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import random

import numpy as np
import torch

from workloads.corpus import stdlib_split
from workloads.knobs import ConfigError

VOCAB_SIZE = 256
GENERATED_BYTES = 1_000_000  # the generated corpus's size when corpus_bytes = 0

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def load_bytes(path: str) -> np.ndarray:
    """A token file (.npy, ints in [0, 256)) or any other file as raw bytes -> uint8 (N,)."""
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ConfigError(f"knob 'data_path': {path} must hold a 1-D integer array "
                                  f"(got shape {arr.shape}, dtype {arr.dtype})")
            if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
                raise ConfigError(f"knob 'data_path': tokens in {path} must be bytes in "
                                  f"[0, 256) (got range [{arr.min()}, {arr.max()}])")
            return arr.astype(np.uint8)
        return np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ConfigError(f"knob 'data_path': cannot read {path!r} ({e}); give a text file, "
                          f"a .npy byte-token file, or null for the generated corpus") from e


@functools.lru_cache(maxsize=4)
def generate_corpus(n_bytes: int, seed: int = 0) -> np.ndarray:
    """Deterministic synthetic text of exactly n_bytes bytes (uint8, read-only)."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                       for _ in range(rng.choice((1, 1, 2, 2, 2, 3))))

    lexicon = sorted({word() for _ in range(900)})[:600]
    rng.shuffle(lexicon)
    # Zipf-like weights: a few frequent words, a long tail (as in real text).
    zipf = list(itertools.accumulate(1.0 / (r + 1) for r in range(80)))

    def zipf_pick(items: list[str]) -> str:
        return items[bisect.bisect(zipf, rng.random() * zipf[-1])]

    topics = []
    for t in range(6):
        words = rng.sample(lexicon, 80)
        # Markov chain inside the topic: every word has 3 favourite successors.
        succ = {w: rng.sample(words, 3) for w in words}
        topics.append(dict(name=word().capitalize() + word(), words=words, succ=succ,
                           end=".!?;"[t % 4]))

    def sentence(topic: dict) -> str:
        w = zipf_pick(topic["words"])
        out = [w.capitalize()]
        for _ in range(rng.randint(3, 11)):
            w = rng.choice(topic["succ"][w]) if rng.random() < 0.75 else zipf_pick(topic["words"])
            out.append(w)
        return " ".join(out) + topic["end"]

    parts: list[str] = []
    size, serial = 0, 0
    while size < n_bytes:
        serial += 1
        topic = topics[rng.randrange(len(topics))]
        lines = [f"= {topic['name']} {serial} =\n"]
        for line in range(1, rng.randint(3, 8) + 1):
            text = " ".join(sentence(topic) for _ in range(rng.randint(2, 5)))
            lines.append(f"{line}. {text}\n")
        lines.append(f"end of {topic['name']} {serial}\n\n")
        section = "".join(lines)
        parts.append(section)
        size += len(section)
    data = np.frombuffer("".join(parts).encode("ascii")[:n_bytes], dtype=np.uint8).copy()
    data.flags.writeable = False  # cached and shared: nobody may edit it in place
    return data


def load_corpus(data_path: str | None, corpus_bytes: int, corpus_seed: int) -> np.ndarray:
    """The generated corpus (data_path None) or the named file, as one stream."""
    if data_path is None:
        return generate_corpus(int(corpus_bytes) or GENERATED_BYTES, int(corpus_seed))
    return load_bytes(data_path)


def corpus_splits(corpus: str, data_path: str | None, corpus_bytes: int, corpus_seed: int,
                  val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): a named file or the generated corpus split at the tail, or the stdlib
    corpus split by file. A data_path wins over `corpus`."""
    if data_path is None and corpus == "stdlib":
        return stdlib_split(val_fraction, corpus_bytes)
    return split(load_corpus(data_path, corpus_bytes, corpus_seed), val_fraction)


def unigram(data: np.ndarray) -> torch.Tensor:
    """The byte distribution of `data`: float64 (256,), sums to 1."""
    counts = np.bincount(np.asarray(data, dtype=np.uint8), minlength=VOCAB_SIZE)
    return torch.from_numpy(counts / max(counts.sum(), 1))


def make_probes(n: int, seq_len: int, generator: torch.Generator,
                probs: torch.Tensor) -> torch.Tensor:
    """Content-free inputs (n, seq_len) int64: bytes drawn i.i.d. from `probs` (a unigram), so
    their frequencies are the corpus's and their order carries no information."""
    idx = torch.multinomial(probs.double(), n * seq_len, replacement=True, generator=generator)
    return idx.view(n, seq_len)


def entropy_bits(p: torch.Tensor) -> float:
    """Shannon entropy (bits) of a probability vector."""
    p = p[p > 0].double()
    return float(-(p * p.log2()).sum())


def split(data: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The first (1 − val_fraction) of the stream trains, the tail validates (no overlap)."""
    cut = int(round(len(data) * (1.0 - val_fraction)))
    return data[:cut], data[cut:]


class ByteWindows(torch.utils.data.Dataset):
    """Non-overlapping windows: item i = (bytes [iT, iT+T), the same shifted by one), int64 (T,)."""

    def __init__(self, data: np.ndarray, seq_len: int):
        self.data, self.seq_len = data, seq_len

    def __len__(self) -> int:
        return max(0, (len(self.data) - 1) // self.seq_len)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.seq_len
        chunk = torch.from_numpy(self.data[i * T:i * T + T + 1].astype(np.int64))  # (T + 1,)
        return chunk[:-1], chunk[1:]
