"""Bad input gets one line on stderr naming the file and the problem, exit 2,
and no traceback, from the command line as from the library."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rlsched.cli import main
from tests.helpers import assert_one_line_error, rlsched

JOB_HEAD = "name: j\ntasks:\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BAD_FILES = {
    "cycle": ("cycle.yaml", JOB_HEAD + "  - {id: a, estimate: 1, after: [b]}\n"
              "  - {id: b, estimate: 1, after: [a]}\n", "dependency cycle"),
    "unknown parent": ("parent.yaml", JOB_HEAD + "  - {id: a, estimate: 1, after: [ghost]}\n",
                       "task 'a': unknown parent 'ghost'"),
    "duplicate id": ("dup.yaml", JOB_HEAD + "  - {id: a, estimate: 1}\n  - {id: a, estimate: 2}\n",
                     "duplicate task id 'a'"),
    "negative estimate": ("neg.yaml", JOB_HEAD + "  - {id: a, estimate: -5}\n",
                          "task 'a': estimate -5 is not a duration of 0 seconds or more"),
    "negative runtime": ("negrun.yaml", JOB_HEAD + "  - {id: a, runtime: -5}\n",
                         "task 'a': negative runtime -5"),
    "missing runtime": ("missing.yaml", JOB_HEAD + "  - {id: a}\n", "task 'a': missing runtime"),
    "too big": ("big.yaml", JOB_HEAD + "  - {id: a, estimate: 1, gpu_memory: 500GiB}\n",
                "needs 500 GiB of GPU memory but the largest device"),
    "duplicate key": ("dupkey.yaml", "name: j\nname: k\ntasks:\n  - {id: a, estimate: 1}\n",
                      "key 'name' given twice in one mapping at line 2"),
    "corrupt yaml": ("bad.yaml", "name: j\ntasks: [\n  - {id: a\n", "not valid YAML"),
    "not a job": ("list.yaml", "- 1\n- 2\n", "must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_job_files_exit_2_with_one_line_naming_file_and_problem(tmp_path, capsys, case):
    name, text, problem = BAD_FILES[case]
    path = write(tmp_path, name, text)
    code = main(["evaluate", "--workload", f"jobs:{path}", "--pool", "preset:workstation-4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(path) in err[0] and problem in err[0], err


def test_corrupt_json_names_the_file(tmp_path):
    path = write(tmp_path, "wf.json", '{"workflow": {"specification": ')
    assert_one_line_error(rlsched("evaluate", "--workload", f"wfcommons:{path}", "--pool",
                                  "identical:2"), str(path), "not valid JSON")


def test_json_that_is_not_a_workflow_names_the_file(tmp_path):
    path = write(tmp_path, "wf.json", '{"name": "x"}')
    assert_one_line_error(rlsched("evaluate", "--workload", f"wfcommons:{path}", "--pool",
                                  "identical:2"), str(path), "not a WfFormat workflow")


def test_corrupt_stg_names_the_file(tmp_path):
    path = write(tmp_path, "g.stg", "3\n0 0 0\n1 oops\n")
    assert_one_line_error(rlsched("evaluate", "--workload", f"stg:{path}", "--pool",
                                  "identical:2"), str(path), "not an STG file")


def test_a_cyclic_stg_is_caught(tmp_path):
    path = write(tmp_path, "c.stg", "2\n0 0 0\n1 1 1 2\n2 1 1 1\n3 0 2 1 2\n")
    assert_one_line_error(rlsched("evaluate", "--workload", f"stg:{path}", "--pool",
                                  "identical:2"), str(path), "dependency cycle")


def test_corrupt_pool_file_names_the_file(tmp_path):
    path = write(tmp_path, "pool.yaml", "devices: [a100-80gb, {model: warp-drive}]\n")
    assert_one_line_error(rlsched("evaluate", "--workload", "synthetic:sweep", "--pool",
                                  f"file:{path}"), str(path), "unknown GPU model 'warp-drive'")


@pytest.mark.parametrize("args,needle", [
    (["--workload", "ftp:x", "--pool", "identical:2"], "unknown workload SPEC"),
    (["--workload", "synthetic:sweep", "--pool", "moon:2"], "unknown pool SPEC"),
    (["--workload", "synthetic:sweep", "--pool", "identical:2", "--scheduler", "magic"],
     "unknown scheduler 'magic'"),
    (["--workload", "synthetic:sweep", "--pool", "identical:2", "--perturb", "quakes"],
     "unknown perturbation"),
    (["--workload", "synthetic:sweep", "--pool", "identical:2", "--arrivals", "poisson",
      "--load", "-1"], "--load"),
    (["--pool", "identical:2"], "--workload"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    assert_one_line_error(rlsched("evaluate", *args), needle)


def test_nothing_is_written_when_the_input_is_bad(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("previous results")
    proc = rlsched("evaluate", "--workload", "stg:/no/such", "--pool", "identical:2",
                   "--json", str(out))
    assert proc.returncode == 2
    assert out.read_text() == "previous results"


def test_an_input_error_survives_a_process_boundary():
    """Raised in a worker (a SubprocVecEnv, a process pool), it must reach the
    command line as the same one clear line, not as a pickling crash."""
    import pickle

    from rlsched.errors import InputError

    e = pickle.loads(pickle.dumps(InputError("jobs/a.yaml", "task 'b' has an unknown parent 'x'")))
    assert isinstance(e, InputError) and str(e) == "jobs/a.yaml: task 'b' has an unknown parent 'x'"
    assert (e.source, e.problem) == ("jobs/a.yaml", "task 'b' has an unknown parent 'x'")


def test_serve_with_an_unknown_pool_names_the_pools_serve_takes(tmp_path):
    proc = rlsched("serve", "--pool", "fake4", "--exit-when-idle", state=tmp_path / "s")
    assert_one_line_error(proc, "fake4", "local", "fake:N")


def test_version_is_printed():
    proc = rlsched("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("rlsched ")


def test_reading_a_state_that_does_not_exist_creates_nothing(tmp_path):
    state = tmp_path / "never-used"
    for args in (["status"], ["logs", "j/t"], ["cancel", "j"], ["purge", "j"], ["resume"],
                 ["drain"], ["drain", "--gpu", "0"]):
        assert_one_line_error(rlsched(*args, state=state), "no rlsched state here")
    assert not state.exists()


@pytest.mark.parametrize("text, problem", [
    ("  - {id: a, command: true}\n", "command is text, but YAML read this one as the boolean "
     "True: put it in quotes"),
    ("  - {id: a, command: 42}\n", "command is text, but YAML read this one as the int 42"),
    ("  - {id: a, command: 'true', env: {DEBUG: yes}}\n", "env DEBUG is text, but YAML read "
     "this one as the boolean True"),
    ("  - {id: a, estimate: 1}\n", "job 'j' task 'a' has no command: serve would have nothing "
     "to run"),
])
def test_submit_refuses_a_task_that_would_not_run_the_command_written(tmp_path, text, problem):
    path = write(tmp_path, "j.yaml", JOB_HEAD + text)
    assert_one_line_error(rlsched("submit", path, state=tmp_path / "state"), str(path), problem)
    assert not (tmp_path / "state").exists()


def test_submit_refuses_one_job_twice_and_says_why(tmp_path):
    one = write(tmp_path, "one.yaml", JOB_HEAD + "  - {id: a, command: 'true'}\n")
    other = write(tmp_path, "other.yaml", JOB_HEAD + "  - {id: b, command: 'true'}\n")
    state = tmp_path / "state"
    assert_one_line_error(rlsched("submit", one, one, state=state),
                          "one.yaml: given twice in this submit: job 'j' would be queued twice")
    assert_one_line_error(rlsched("submit", one, f"{tmp_path}/./one.yaml", state=state),
                          "given twice in this submit")
    assert_one_line_error(rlsched("submit", one, other, state=state),
                          f"other.yaml: job 'j' is in {one} too")
    assert not state.exists()


def test_the_shipped_policy_is_rl_default_from_any_directory(tmp_path):
    import agents  # noqa: F401  registers rl:
    from agents import SHIPPED, checkpoint_path
    from rlsched.errors import InputError

    assert checkpoint_path("default") == SHIPPED / "default.zip"
    with pytest.raises(InputError, match="looked for .*no-such.*rl:default is the shipped one"):
        checkpoint_path("no-such")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.zip").write_bytes(b"")
    with pytest.raises(InputError, match=r"is a directory; name a checkpoint in it \(best.zip"):
        checkpoint_path(str(tmp_path / "run"))
    proc = subprocess.run([sys.executable, "-m", "rlsched", "evaluate", "--workload",
                           "synthetic:pipeline?jobs=2", "--pool", "identical:2", "--scheduler",
                           "rl:default"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rl:default" in proc.stdout


def test_an_unknown_pool_for_serve_names_every_kind_serve_takes(tmp_path):
    proc = rlsched("serve", "--pool", "bogus", "--exit-when-idle", state=tmp_path / "state")
    assert_one_line_error(proc, "bogus", "local", "fake:N", "identical:N", "preset:NAME",
                          "file:PATH")


def test_a_sub_command_parsed_alone_reads_its_arguments_as_the_whole_parser_does():
    """main builds only the parser of the sub-command it is given (every
    command starts faster): each one's help, and so its options, must be
    what the whole parser has."""
    import contextlib
    import io

    import pytest

    from rlsched.cli import _commands, build_parser

    def help_of(parser, name):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        return out.getvalue()

    whole = build_parser()
    for name in _commands():
        alone = build_parser(name)
        assert help_of(alone, name) == help_of(whole, name), name
        assert alone._subparsers._group_actions[0].choices.keys() == {name}
    assert build_parser("no-such-command")._subparsers._group_actions[0].choices.keys() == \
        _commands().keys()
