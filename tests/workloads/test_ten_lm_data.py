"""Byte-level data: the stdlib corpus (deterministic, split by file), the generated corpus, text
and token files, windows, unigram probes."""
import json
import os
import platform
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
import torch

from workloads.contract import ConfigError
from workloads.corpus import (STDLIB_PACKAGES, STDLIB_SKIP, TEST_DIRS, stdlib_files,
                              stdlib_manifest, stdlib_split)
from workloads.text_data import (ByteWindows, corpus_splits, entropy_bits, generate_corpus,
                                 load_bytes, load_corpus, make_probes, split, unigram)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_corpus_is_deterministic_and_exact_size():
    a = generate_corpus(50_000, 3)
    assert a.dtype == np.uint8 and a.shape == (50_000,)
    assert np.array_equal(a, generate_corpus.__wrapped__(50_000, 3))  # not just the cache
    assert not np.array_equal(a, generate_corpus(50_000, 4))
    text = bytes(a).decode("ascii")
    assert text.startswith("= ") and "end of " in text  # section header / footer structure


def test_text_and_token_files(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("héllo")
    assert bytes(load_bytes(str(txt))) == "héllo".encode()
    npy = tmp_path / "t.npy"
    np.save(npy, np.array([1, 2, 255], dtype=np.int64))
    assert load_bytes(str(npy)).tolist() == [1, 2, 255]
    np.save(npy, np.array([1, 256]))
    with pytest.raises(ConfigError, match="data_path"):
        load_bytes(str(npy))
    with pytest.raises(ConfigError, match="data_path"):
        load_corpus(str(tmp_path / "missing.txt"), 0, 0)


def test_windows_shift_targets_by_one():
    data = np.arange(100, dtype=np.uint8)
    train, val = split(data, 0.2)
    assert len(train) == 80 and len(val) == 20
    ds = ByteWindows(train, 10)
    assert len(ds) == 7  # (80 − 1) // 10
    x, y = ds[2]
    assert torch.equal(x, torch.arange(20, 30)) and torch.equal(y, torch.arange(21, 31))


# ---- the stdlib corpus -------------------------------------------------------------------------
STDLIB_DIGEST = """
import hashlib, json
from workloads.corpus import stdlib_manifest, stdlib_split
train, val = stdlib_split(0.1)
print(json.dumps({**stdlib_manifest(), "train": hashlib.sha256(train.tobytes()).hexdigest(),
                  "val": hashlib.sha256(val.tobytes()).hexdigest()}))
"""


def test_stdlib_corpus_is_the_same_bytes_in_two_processes():
    """Two fresh interpreters read the same files in the same order: same stream, same hash,
    same split (no set or dict ordering, no hash randomization involved)."""
    outs = []
    for seed in ("0", "12345"):  # different PYTHONHASHSEEDs: str hashing must not matter
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", STDLIB_DIGEST], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True)
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1]
    m = outs[0]
    assert m == {**stdlib_manifest(), "train": m["train"], "val": m["val"]}  # and this process
    assert len(m["sha256"]) == 64 and m["python"].endswith(platform.python_version())
    assert 2_000_000 < m["bytes"] < 20_000_000 and m["files"] > 100  # a few MB of real text


def test_stdlib_subset_is_documented_and_free_of_tests():
    files = stdlib_files()
    assert files == sorted(files) and len(set(files)) == len(files)
    for path in files:
        parts = path.split("/")
        assert path.endswith(".py") and not TEST_DIRS & set(parts[:-1]), path
        assert parts[0] in STDLIB_PACKAGES or (len(parts) == 1 and not path.startswith("_")
                                               and path[:-3] not in STDLIB_SKIP), path
    assert "json/decoder.py" in files and "argparse.py" in files
    assert not any(f.startswith("_sysconfigdata") for f in files)  # build-specific


def documents(stream: np.ndarray) -> dict[str, bytes]:
    """Split a stream back into {path: source} at the `# file: <path>` header lines."""
    text = stream.tobytes()
    out = {}
    for part in text.split(b"# file: ")[1:]:
        head, _, body = part.partition(b"\n")
        out[head.decode()] = body
    return out


def test_stdlib_split_is_by_file():
    train, val = stdlib_split(0.1)
    assert not train.flags.writeable and not val.flags.writeable  # shared, cached bytes
    t, v = documents(train), documents(val)
    assert t and v and not set(t) & set(v)  # no file on both sides
    assert set(t) | set(v) == set(stdlib_files())
    root = sysconfig.get_paths()["stdlib"]
    path = sorted(v)[0]
    with open(os.path.join(root, *path.split("/")), "rb") as f:
        assert v[path] == f.read()  # whole files, verbatim
    assert 0.1 <= len(val) / (len(train) + len(val)) < 0.15
    # the assignment of a file depends on its path only: a larger val_fraction only adds files
    assert set(v) <= set(documents(stdlib_split(0.2)[1]))
    # a cap keeps the split: the first bytes of each side
    small_train, small_val = stdlib_split(0.1, corpus_bytes=50_000)
    assert len(small_train) == 45_000 and len(small_val) == 5_000
    assert np.array_equal(small_train, train[:45_000]) and np.array_equal(small_val, val[:5_000])


def test_corpus_choice():
    train, val = corpus_splits("stdlib", None, 0, 0, 0.1)
    assert np.array_equal(train, stdlib_split(0.1)[0])
    gen_train, gen_val = corpus_splits("generated", None, 0, 0, 0.1)
    assert len(gen_train) + len(gen_val) == 1_000_000  # 0 = the generated corpus's default size
    assert bytes(gen_train[:2]) == b"= "


def test_probes_follow_the_unigram_distribution():
    """Probe bytes are i.i.d. draws from the corpus unigram: their histogram matches it (and
    no byte the corpus lacks ever appears), and neighbours are independent."""
    train, _ = stdlib_split(0.1)
    probs = unigram(train)
    assert float(probs.sum()) == pytest.approx(1.0) and 2.0 < entropy_bits(probs) < 8.0
    p = make_probes(64, 1024, torch.Generator().manual_seed(0), probs)
    assert p.shape == (64, 1024) and p.dtype == torch.int64
    freq = torch.bincount(p.flatten(), minlength=256).double() / p.numel()
    assert (freq[probs == 0] == 0).all()
    assert float((freq - probs).abs().sum()) < 0.02  # total variation ≈ sampling noise
    # order carries no information: the pair distribution is the product of the marginals
    a, b = p[:, :-1].flatten(), p[:, 1:].flatten()
    top = int(probs.argmax())
    assert float(((a == top) & (b == top)).double().mean()) == pytest.approx(
        float(probs[top]) ** 2, rel=0.1)
    # the text itself is not like that: real bigrams are far from independent
    real = torch.from_numpy(train[:65536].astype(np.int64))
    assert float(((real[:-1] == top) & (real[1:] == top)).double().mean()) > 2 * float(
        probs[top]) ** 2
