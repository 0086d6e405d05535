"""Malformed input, table-driven: every case is exit 2 with one bounded `error:` line, no
traceback, nothing written, the whole stderr <= 4 KB, and (checked in a fresh interpreter for
a few) Ray never imported.

Spaces use the `ten_lm` workload: the checks here are the sweep service's, not a workload's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from sweeps import run
from sweeps.errors import BadInput
from sweeps.space import MAX_SPACE_BYTES, SPACES_DIR, load_space
from sweeps.sweep import Sweep
from tests.sweeps.test_space import REPO, cli_without_ray

MAX_STDERR = 4096

TEN = ("workload: ten_lm\n"
       "metric: {name: val_bpb, goal: minimize}\n"
       "parameters:\n"
       "  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.01}\n")

# The "billion laughs": ~1 KB of anchors and aliases that expands to 9**9 strings.
BOMB = "".join(
    f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
    for name, prev in zip("abcdefghi", ['"lol"'] + [f"*{c}" for c in "abcdefgh"])) + TEN
BIG = "x" * 100_000
SAL = ("workload: saliency\n"
       "metric: {name: val_ig, goal: maximize}\n"
       "parameters:\n"
       "  lambda: {values: [0.1]}\n")


def space_case(case_id, content, expected, flags=()):
    """A space file (bytes or text) that must fail --dry-run with one line holding `expected`."""
    return pytest.param(content, list(flags), expected, id=case_id)


SPACE_CASES = [
    space_case("yaml bomb", BOMB, "space.yaml: line 1: YAML anchors and aliases (&name, *name, "
                                  "<<: *name) are not allowed in a space file"),
    space_case("merge key", TEN + "fixed: &f {epochs: 2}\nbaseline: {<<: *f}\n",
               "space.yaml: line 5: YAML anchors and aliases"),
    space_case("over the size limit", TEN + "description: '" + "x" * MAX_SPACE_BYTES + "'\n",
               f"space.yaml: file too large ({len(TEN) + MAX_SPACE_BYTES + 16} bytes; a space "
               f"file may have at most {MAX_SPACE_BYTES} bytes)"),
    space_case("not UTF-8", TEN.encode() + b"description: caf\xe9\n",
               f"space.yaml: not UTF-8 text (byte 0xe9 at byte offset {len(TEN) + 16}); save "
               f"the file as UTF-8"),
    space_case("UTF-16", TEN.encode("utf-16"), "space.yaml: not UTF-8 text (byte 0xff at byte "
                                               "offset 0)"),
    space_case("invalid YAML", "workload: [ten_lm\n", "space.yaml: not valid YAML at line 2: "
                                                      "expected ',' or ']', but got '<stream end>'"),
    space_case("NUL byte", TEN + "seed: 1\x00\n", "space.yaml: not valid YAML at character "
                                                  f"{len(TEN) + 7}: character #x0000"),
    space_case("nested too deeply", TEN + "description: " + "[" * 5000 + "]" * 5000 + "\n",
               "space.yaml: line 5: YAML nested too deeply (at most 32 levels)"),
    space_case("too many nodes", TEN + "description: [" + "1," * 20_000 + "1]\n",
               "space.yaml: line 5: too many YAML nodes (a space file may have at most 10000)"),
    space_case("impossible date", TEN + "seed: 2001-13-45\n",
               "space.yaml: not valid YAML: a value cannot be read (month must be in 1..12)"),
    space_case("integer of 400 digits", TEN + "seed: " + "9" * 400 + "\n",
               "space.yaml: seed: integer too large (got an integer of 1329 bits; allowed: "
               "|n| <= 2**63-1)"),
    space_case("trials 1e20", TEN + "budget: {trials: 1e20}\n",
               "space.yaml: budget.trials: must be an integer in [1, 100000] (got '1e20')"),
    space_case("trials 1.0e+20", TEN + "budget: {trials: 1.0e+20}\n",
               "space.yaml: budget.trials: must be an integer in [1, 100000] (got 1e+20)"),
    space_case("trials 10**7", TEN + "budget: {trials: 10000000}\n",
               "space.yaml: budget.trials: must be an integer in [1, 100000] (got 10000000)"),
    space_case("trials null", TEN + "budget: {trials: null}\n",
               "space.yaml: budget.trials: must be an integer in [1, 100000] (got None)"),
    space_case("max_concurrent huge", TEN + "budget: {max_concurrent: 1000000}\n",
               "space.yaml: budget.max_concurrent: must be an integer in [1, 100000]"),
    space_case("time limit inf", TEN + "budget: {time_limit_s: .inf}\n",
               "space.yaml: budget.time_limit_s: must be a number in (0, 31536000] (got inf)"),
    space_case("workers huge", TEN + "resources: {workers_per_trial: 100000}\n",
               "space.yaml: resources.workers_per_trial: must be an integer in [1, 4096] "
               "(got 100000)"),
    space_case("gpus nan", TEN + "resources: {gpus_per_worker: .nan}\n",
               "space.yaml: resources.gpus_per_worker: must be a number in [0, 1024] (got nan)"),
    space_case("cpus huge", TEN + "resources: {cpus_per_worker: 5000}\n",
               "space.yaml: resources.cpus_per_worker: must be a number in (0, 1024] (got 5000)"),
    space_case("seed negative", TEN + "seed: -1\n",
               "space.yaml: seed: must be an integer in [0, 4294967295] (got -1)"),
    space_case("seed over 2**32", TEN + "seed: 4294967296\n",
               "space.yaml: seed: must be an integer in [0, 4294967295] (got 4294967296)"),
    space_case("log_uniform overflow",
               TEN.replace("log_uniform_values, min: 0.0001, max: 0.01", "log_uniform, min: 1, "
                                                                         "max: 1000"),
               "space.yaml: parameters.lr: log_uniform takes natural-log exponents; |min|, |max| "
               "must be <= 700 (got min=1, max=1000)"),
    space_case("100 KB value under an unknown key", TEN + f"colour: {BIG}\n",
               "space.yaml: colour: unknown key (allowed: workload, method"),
    space_case("100 KB unknown key", TEN + f"? {BIG}\n: 1\n",
               "space.yaml: " + "x" * 57 + "...: unknown key (allowed:"),
    space_case("100 KB knob value", TEN + f"fixed: {{preset: {BIG}}}\n",
               "space.yaml: fixed.preset: outside the domain of knob 'preset' (got 'xxxxxxxx"),
    space_case("100 KB knob value of the wrong type", TEN + f"fixed: {{epochs: {BIG}}}\n",
               "space.yaml: fixed.epochs: expected int (got 'xxxxxxxx"),
    space_case("100 KB choice", TEN.replace("{distribution: log_uniform_values, min: 0.0001, "
                                            "max: 0.01}", f"{{values: [{BIG}]}}"),
               "space.yaml: parameters.lr.values[0]: expected float (got 'xxxx"),
    space_case("100 KB workload name", TEN.replace("ten_lm", BIG),
               "space.yaml: workload: unknown workload (got 'xxxx"),
    space_case("100 KB metric", TEN.replace("val_bpb", BIG), "space.yaml: metric.name: workload "
                                                             "'ten_lm' does not report this"),
    space_case("batch not divisible (fixed)", TEN + "fixed: {batch_size: 30}\n"
                                                    "resources: {workers_per_trial: 4}\n",
               "space.yaml: fixed.batch_size: 30 is not divisible by 4 workers "
               "(resources.workers_per_trial); each DDP worker gets batch_size / 4"),
    space_case("batch not divisible (default)", TEN + "resources: {workers_per_trial: 3}\n",
               "space.yaml: batch_size (workload default): 32 is not divisible by 3 workers "
               "(resources.workers_per_trial)"),
    space_case("batch not divisible (searched)",
               TEN + "  batch_size: {values: [16, 30]}\nresources: {workers_per_trial: 4}\n",
               "space.yaml: parameters.batch_size.values: [30] not divisible by 4 workers"),
    space_case("batch not divisible (int_uniform)",
               TEN + "  batch_size: {distribution: int_uniform, min: 8, max: 64}\n"
                     "resources: {workers_per_trial: 2}\n",
               "space.yaml: parameters.batch_size: int_uniform suggests every integer in [8, 64], "
               "not all divisible by 2 workers"),
    space_case("batch not divisible (baseline)",
               TEN + "baseline: {batch_size: 6}\nresources: {workers_per_trial: 4}\n",
               "space.yaml: baseline.batch_size: 6 is not divisible by 4 workers"),
    space_case("batch not divisible (--workers-per-trial)", TEN + "fixed: {batch_size: 32}\n",
               "space.yaml: fixed.batch_size: 32 is not divisible by 3 workers "
               "(--workers-per-trial)", flags=["--workers-per-trial", "3"]),
    space_case("batch not divisible (--smoke)", TEN,
               "space.yaml: batch_size (--smoke): 8 is not divisible by 3 workers "
               "(--workers-per-trial)", flags=["--smoke", "--workers-per-trial", "3"]),
    space_case("backbone not importable", SAL + "fixed: {backbone: 'no_such_pkg_q.models:net'}\n",
               "space.yaml: fixed: knob 'backbone': module 'no_such_pkg_q.models' cannot be "
               "imported"),
    space_case("backbone malformed", SAL + f"fixed: {{backbone: 'resnet {BIG}'}}\n",
               "knob 'backbone': must look like 'package.module:factory' (got 'resnet xxx"),
]


def call_main(argv: list[str]) -> int:
    try:
        return run.main(argv)
    except SystemExit as e:  # argparse
        return e.code


def tree(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, dirs, files in os.walk(path) for f in dirs + files)


def assert_bounded_failure(rc, err: str, lines: int | None = 1) -> list[str]:
    assert rc == 2, err[:2000]
    assert "Traceback" not in err, err[:2000]
    assert len(err.encode()) <= MAX_STDERR, len(err.encode())
    got = err.strip().splitlines()
    if lines is not None:
        assert len(got) == lines, got
    return got


@pytest.mark.parametrize("content, flags, expected", SPACE_CASES)
def test_malformed_space_is_one_bounded_line(tmp_path, capsys, content, flags, expected):
    path = tmp_path / "space.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    before = tree(tmp_path)
    rc = call_main(["--space", str(path), "--dry-run", "--output", str(tmp_path / "out"),
                    *flags])
    err = capsys.readouterr().err
    [line] = assert_bounded_failure(rc, err)
    assert line.startswith("error: ") and expected in line, line
    assert tree(tmp_path) == before  # nothing written


def test_many_problems_are_cut_to_a_bounded_report(tmp_path, capsys):
    # 200 bad choices, each a 1 KB string: 200 problems, reported in <= 4 KB with a count
    values = ", ".join(f"'{i}{'y' * 1000}'" for i in range(200))
    path = tmp_path / "space.yaml"
    path.write_text(TEN + f"  preset: {{values: [{values}]}}\n")
    rc = call_main(["--space", str(path), "--dry-run", "--output", str(tmp_path / "out")])
    got = assert_bounded_failure(rc, capsys.readouterr().err, lines=None)
    assert 1 < len(got) <= 21 and got[-1].startswith("error: ... and ") and "more problem(s)" in got[-1]
    assert all(len(line) <= 520 for line in got)


FLAG_CASES = [
    (["--trials", "abc"], "argument --trials: must be an integer in [1, 100000] (got 'abc')"),
    (["--trials", "1e20"], "argument --trials: must be an integer in [1, 100000] (got '1e20')"),
    (["--trials", "10000000"], "argument --trials: must be an integer in [1, 100000]"),
    (["--trials", "9" * 100_000], "argument --trials: must be an integer in [1, 100000] (got "
                                  "'99999"),
    (["--max-concurrent", "0"], "argument --max-concurrent: must be an integer in [1, 100000]"),
    (["--workers-per-trial", "5000"], "argument --workers-per-trial: must be an integer in "
                                      "[1, 4096] (got '5000')"),
    (["--gpus-per-worker", "nan"], "argument --gpus-per-worker: must be a number in [0, 1024] "
                                   "(got 'nan')"),
    (["--cpus-per-worker", "inf"], "argument --cpus-per-worker: must be a number in (0, 1024] "
                                   "(got 'inf')"),
    (["--cpus-per-worker", "0"], "argument --cpus-per-worker: must be a number in (0, 1024]"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295] (got '-1')"),
    (["--seed", "4294967296"], "argument --seed: must be an integer in [0, 4294967295]"),
    (["--confirm-seed-offset", "-3"], "argument --confirm-seed-offset: must be an integer in "
                                      "[0, 1000000] (got '-3')"),
    (["--" + "z" * 100_000], "unrecognized arguments: --zzzz"),
]


@pytest.mark.parametrize("flags, expected", FLAG_CASES,
                         ids=[" ".join(f)[:40] for f, _ in FLAG_CASES])
def test_malformed_flag_is_argparse_exit_2(tmp_path, capsys, flags, expected):
    rc = call_main(["--space", "ten_energy", "--dry-run", "--output", str(tmp_path / "out"),
                    *flags])
    err = capsys.readouterr().err
    got = assert_bounded_failure(rc, err, lines=None)
    assert got[-1].startswith("sweeps/run.py: error: ") and expected in got[-1], got[-1]
    assert not (tmp_path / "out").exists()


def test_space_file_unreadable_or_missing(tmp_path, capsys):
    rc = call_main(["--space", str(tmp_path / ("n" * 100_000)), "--dry-run"])
    [line] = assert_bounded_failure(rc, capsys.readouterr().err)
    assert "space file not found" in line


# --------------------------------------------------------------------------------------------
# Output directory and --resume
# --------------------------------------------------------------------------------------------
def make_run_dir(root, name="ten_energy-1", state=None) -> str:
    """A run directory as a started sweep leaves it (space.yaml + sweep.json), by hand."""
    run_dir = os.path.join(root, name)
    os.makedirs(run_dir)
    shutil.copyfile(os.path.join(SPACES_DIR, "ten_energy.yaml"),
                    os.path.join(run_dir, "space.yaml"))
    if state is None:
        state = {"space_path": os.path.join(SPACES_DIR, "ten_energy.yaml"),
                 "tracking_uri": "http://127.0.0.1:5999", "experiment_id": "7",
                 "parent_run_id": "abc123", "overrides": {"trials": 3, "smoke": False}}
    with open(os.path.join(run_dir, "sweep.json"), "wb") as f:
        f.write(state if isinstance(state, bytes) else json.dumps(state).encode())
    return run_dir


GOOD_STATE = {"space_path": "/x/ten_energy.yaml", "tracking_uri": None, "experiment_id": "7",
              "parent_run_id": "abc", "overrides": {}}
CORRUPT_STATES = [
    pytest.param(b'{"space_path": ', "not JSON: Expecting value", id="truncated"),
    pytest.param(b"\xff\xfe{}", "not JSON", id="not UTF-8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "not JSON", id="nested"),
    pytest.param(b"x" * (2 << 20), "over 1048576 bytes", id="huge"),
    pytest.param([1, 2], "not a JSON object (got [1, 2])", id="a list"),
    pytest.param({**GOOD_STATE, "experiment_id": None}, "experiment_id: must be a string",
                 id="missing experiment"),
    pytest.param({**GOOD_STATE, "overrides": {"trials": "abc"}},
                 "overrides.trials: must be int (got 'abc')", id="override of wrong type"),
    pytest.param({**GOOD_STATE, "overrides": {BIG: 1}}, "overrides: unknown key 'xxxx",
                 id="100 KB override key"),
    pytest.param({**GOOD_STATE, "overrides": {"trials": 10 ** 9}},
                 "--trials: must be an integer in [1, 100000] (got 1000000000)",
                 id="override out of range"),
]


def test_every_override_a_sweep_saves_is_one_its_resume_accepts():
    import dataclasses

    from sweeps.sweep import Overrides, _state_problem
    saved = {f.name: (True if f.type == "bool" else 2.0 if "float" in f.type
                      else "/x/run" if "str" in f.type else 3)
             for f in dataclasses.fields(Overrides)}
    assert _state_problem({**GOOD_STATE, "overrides": saved}) is None
    assert Overrides(**saved) is not None


@pytest.mark.parametrize("state, expected", CORRUPT_STATES)
def test_corrupt_sweep_json_on_resume(tmp_path, capsys, state, expected):
    run_dir = make_run_dir(tmp_path / "out", state=json.dumps(state).encode()
                           if not isinstance(state, bytes) else state)
    before = tree(tmp_path)
    rc = call_main(["--resume", "--name", os.path.basename(run_dir), "--output",
                    str(tmp_path / "out"), "--dry-run"])
    [line] = assert_bounded_failure(rc, capsys.readouterr().err)
    assert expected in line, line
    if "--trials" not in expected:
        assert line.startswith(f"error: --resume: {run_dir}/sweep.json: corrupt ("), line
    assert tree(tmp_path) == before


def test_output_that_is_a_file_is_refused_even_in_dry_run(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    before = tree(tmp_path)
    rc = call_main(["--space", "ten_energy", "--dry-run", "--output", str(tmp_path / "taken"),
                    "--name", "n"])
    [line] = assert_bounded_failure(rc, capsys.readouterr().err)
    assert line == (f"error: output directory {tmp_path}/taken/n: {tmp_path}/taken exists and "
                    f"is not a directory; choose another --output or --name")
    assert tree(tmp_path) == before


def test_output_check_creates_and_removes(tmp_path):
    """The write probe of a real run leaves nothing behind when it passes either."""
    sweep = Sweep.from_yaml("ten_energy", output=str(tmp_path / "a" / "b"), name="n")
    sweep.check_inputs(write_probe=False)  # --dry-run: judged by type and permissions only
    sweep.check_inputs()
    assert tree(tmp_path) == []
    sweep = Sweep.from_yaml("ten_energy", output="/proc/no-such-dir", name="n")
    with pytest.raises(BadInput, match=r"^output directory /proc/no-such-dir/n: cannot be "
                                       r"created or written \("):
        sweep.check_inputs()


# --------------------------------------------------------------------------------------------
# In a fresh interpreter: real stderr, no traceback, Ray never imported
# --------------------------------------------------------------------------------------------
def cli_cases_without_ray(cases: list[list[str]]) -> list[dict]:
    """Like test_space.cli_without_ray, for several argument lists in one fresh interpreter
    (an interpreter start costs seconds here): each main() runs with stderr captured, an
    exception escaping it is printed as Python would (a traceback), and the process fails if
    Ray was imported by any of them."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys, traceback
        sys.path.insert(0, {REPO!r})
        from sweeps.run import main
        out = []
        for args in {cases!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    rc = main(args)
                except SystemExit as e:
                    rc = e.code
                except BaseException:
                    traceback.print_exc()
                    rc = 1
            out.append({{"rc": rc, "stderr": err.getvalue()}})
        assert "ray" not in sys.modules, "Ray was imported before validation finished"
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_without_ray_never_prints_a_traceback(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(TEN.encode() + b"description: caf\xe9\n")
    (tmp_path / "taken").write_text("a file")
    run_dir = make_run_dir(tmp_path / "runs", state=b"{not json")
    before = tree(tmp_path)
    cases = [  # (args, start of the one line); not --dry-run where the check is for a real run
        (["--space", str(bomb), "--dry-run"], "error: bomb.yaml: line 1: YAML anchors"),
        (["--space", str(latin)], "error: latin.yaml: not UTF-8 text (byte 0xe9"),
        (["--space", "ten_energy", "--output", str(tmp_path / "taken")],
         f"error: output directory {tmp_path}/taken/"),
        (["--resume", "--name", os.path.basename(run_dir), "--output", str(tmp_path / "runs")],
         f"error: --resume: {run_dir}/sweep.json: corrupt (not JSON"),
        (["--space", "ten_energy", "--trials", "abc"], "usage: sweeps/run.py"),
    ]
    for (args, start), got in zip(cases, cli_cases_without_ray([args for args, _ in cases])):
        lines = assert_bounded_failure(got["rc"], got["stderr"], lines=None)
        assert lines[0].startswith(start), (args, lines)
        assert len(lines) == 1 or start.startswith("usage"), lines
    # and once as the plain process, its own stderr and exit code: an uncreatable output
    proc = cli_without_ray(["--space", "ten_energy", "--output", "/proc/no-such-dir"])
    [line] = assert_bounded_failure(proc.returncode, proc.stderr)
    assert line.startswith("error: output directory /proc/no-such-dir/ten_energy-"), line
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------------------------
# --resume keeps the tracking store the sweep started with
# --------------------------------------------------------------------------------------------
def test_resume_uses_the_saved_tracking_uri(tmp_path):
    out = str(tmp_path / "out")
    run_dir = make_run_dir(out)
    for argv in (["--resume", "--name", "ten_energy-1", "--output", out],
                 ["--resume", "--space", "ten_energy", "--output", out]):  # latest of the space
        sweep = run.build(run.parser().parse_args(argv))
        assert sweep.mlflow_uri == "http://127.0.0.1:5999"
        assert sweep.tracking_uri == "http://127.0.0.1:5999"
        assert sweep.run_dir == run_dir and sweep.space.budget.trials == 3


def test_resume_with_an_explicit_mlflow_uri_overrides_the_saved_one(tmp_path):
    out = str(tmp_path / "out")
    make_run_dir(out)
    uri = f"sqlite:///{tmp_path}/other.db"
    sweep = run.build(run.parser().parse_args(["--resume", "--name", "ten_energy-1", "--output",
                                               out, "--mlflow-uri", uri]))
    assert sweep.mlflow_uri == uri


def test_new_sweep_without_mlflow_uri_uses_its_own_store(tmp_path):
    sweep = run.build(run.parser().parse_args(["--space", "ten_energy", "--output",
                                               str(tmp_path), "--name", "n"]))
    assert sweep.mlflow_uri is None
    assert sweep.tracking_uri == f"sqlite:///{tmp_path}/n/mlflow.db"


def test_valid_limits_still_pass(tmp_path, capsys):
    """The largest values in range, and a batch that does divide, are accepted."""
    path = tmp_path / "space.yaml"
    path.write_text(TEN + "fixed: {batch_size: 32}\nseed: 4294967295\n"
                          "budget: {trials: 100000, max_concurrent: 100000, time_limit_s: 31536000}\n"
                          "resources: {workers_per_trial: 4, cpus_per_worker: 1024, "
                          "gpus_per_worker: 1024}\n")
    space = load_space(str(path))
    assert space.budget.trials == 100000 and space.seed == 4294967295
    assert call_main(["--space", str(path), "--dry-run", "--output", str(tmp_path / "out"),
                      "--workers-per-trial", "8"]) == 0, capsys.readouterr().err
    assert not (tmp_path / "out").exists()
