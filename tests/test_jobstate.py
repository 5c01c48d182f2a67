"""Scheduler state words: one table per scheduler, unknown words bounded (pure logic: a Slurm
that reports a word orch does not know cannot be made to on the test site)."""

from __future__ import annotations

from orch.executors.jobstate import SLURM, JobState, UnknownStates, translate
from orch.executors.slurm_monitor import ENDED


def test_every_word_slurm_ends_a_job_with_is_an_end_and_pending_is_not() -> None:
    for word in ENDED:
        assert translate(SLURM, word).ended, word
    assert translate(SLURM, "CANCELLED by 1001") is JobState.CANCELLED
    assert translate(SLURM, "pending") is JobState.PENDING
    assert translate(SLURM, "RUNNING").ended is False
    assert translate(SLURM, "WAITING_FOR_GODOT") is JobState.UNKNOWN
    assert translate(SLURM, "") is JobState.UNKNOWN


def test_a_job_stuck_in_an_unknown_state_is_given_up_after_a_bounded_number_of_polls() -> None:
    states = UnknownStates(limit=3)
    answers = [states.seen("42", "ODD", "Slurm", "doc") for _ in range(3)]
    assert [give_up for _, give_up in answers] == [False, False, True]
    assert answers[0][0] == "Slurm says job 42 is 'ODD', a state orch does not know (doc): " \
        "asking again (1/3)"
    assert answers[2][0].endswith("giving up after 3 polls")
    states.known("42")  # a known state again: the count starts over
    assert states.seen("42", "ODD", "Slurm", "doc")[1] is False


def test_sge_letters_are_read_as_written_and_all_of_them_are_known() -> None:
    from orch.executors.sge_scheduler import SGE_STATES

    assert translate(SGE_STATES, "r") is JobState.RUNNING
    assert translate(SGE_STATES, "qw") is JobState.PENDING
    assert translate(SGE_STATES, "Eqw") is JobState.FAILED
    assert translate(SGE_STATES, "S") is JobState.RUNNING  # suspended by its queue: holds slots
    assert translate(SGE_STATES, "COMPLETED") is JobState.COMPLETED
    assert translate(SGE_STATES, "zz") is JobState.UNKNOWN


def test_sge_status_is_read_from_qstat_xml_then_qacct_then_the_exit_file() -> None:
    from orch.executors.sge_scheduler import SGE

    xml = """<?xml version='1.0'?>
<job_info><queue_info><job_list state="running"><JB_job_number>7</JB_job_number>
<state>r</state><queue_name>all.q@node3</queue_name></job_list></queue_info>
<job_info><job_list state="pending"><JB_job_number>8</JB_job_number><state>Eqw</state>
<queue_name></queue_name></job_list></job_info></job_info>"""
    text = "\n".join(
        [f"X {line}" for line in xml.splitlines()]
        + ["W 8 error reason    1:          can't chdir to /gone: No such file",
           "A 9 hostname     node2", "A 9 exit_status  3", "A 9 failed       0",
           "A 9 ru_wallclock 5s", "A 9 maxvmem      4.906MB", "O 9 last line",
           "E 10 0"]
    )  # fmt: skip
    infos = SGE.parse_status(text, ["7", "8", "9", "10", "11"])
    assert (infos["7"].state, infos["7"].ended, infos["7"].node_list) == ("r", False, "node3")
    assert infos["8"].ended and infos["8"].state == "FAILED"
    assert "Eqw" in infos["8"].reason and "can't chdir to /gone" in infos["8"].reason
    nine = infos["9"]
    assert (nine.state, nine.exit_code) == ("FAILED", 3)
    assert (nine.elapsed, nine.node_list) == ("5s", "node2")
    assert nine.usage["maxvmem"] == "4.906MB" and nine.stdout_tail == ["last line"]
    assert (infos["10"].state, infos["10"].exit_code) == ("COMPLETED", 0)  # exit file only
    assert infos["11"].state == "UNKNOWN" and infos["11"].ended


def test_an_sge_job_whose_script_wrote_its_exit_file_has_ended_though_qstat_lists_it() -> None:
    """SGE keeps a job in qstat for a moment after its script ended: this run's exit file (not
    older than the job's start) says it ended; an older one (a job id SGE gave before) does not.
    """
    import time as clock

    from orch.executors.sge_scheduler import SGE

    start = clock.mktime(clock.strptime("2026-12-06T09:11:16", "%Y-%m-%dT%H:%M:%S"))
    xml = ["<job_info><queue_info>"] + [
        f"<job_list><JB_job_number>{n}</JB_job_number><state>r</state>"
        "<JAT_start_time>2026-12-06T09:11:16</JAT_start_time>"
        "<queue_name>all.q@node1</queue_name></job_list>" for n in (1, 2)
    ] + ["</queue_info></job_info>"]
    text = "\n".join([*(f"X {line}" for line in xml), f"E 1 0 {start + 2:.0f}",
                      f"E 2 0 {start - 3600:.0f}", "O 1 bye"])  # fmt: skip
    infos = SGE.parse_status(text, ["1", "2"])
    assert infos["1"].ended and (infos["1"].state, infos["1"].exit_code) == ("COMPLETED", 0)
    assert infos["1"].stdout_tail == ["bye"] and infos["1"].node_list == "node1"
    assert not infos["2"].ended and infos["2"].state == "r"


def test_pbs_status_is_read_from_qstat_json_then_the_exit_file() -> None:
    """PBS's qstat -f -F json -x: running, finished (Exit_status, resources_used), killed by a
    signal (256 + signal), and a job the server no longer keeps (its exit file)."""
    import json

    from orch.executors.pbs_scheduler import PBS, PBS_STATES

    document = {"Jobs": {
        "7.server": {"job_state": "R", "exec_host": "node3/0*2",
                     "stime": "Sun Dec  6 09:11:16 2026"},
        "8.server": {"job_state": "F", "Exit_status": 3, "exec_host": "node2/0",
                     "resources_used": {"walltime": "00:00:05", "mem": "4kb"}},
        "9.server": {"job_state": "F", "Exit_status": 271},
    }}  # fmt: skip
    text = "\n".join([*(f"J {line}" for line in json.dumps(document, indent=4).splitlines()),
                      "E 10.server 0", "O 8.server last line"])  # fmt: skip
    infos = PBS.parse_status(text, ["7.server", "8.server", "9.server", "10.server", "11"])
    assert (infos["7.server"].state, infos["7.server"].ended) == ("R", False)
    assert infos["7.server"].node_list == "node3"
    eight = infos["8.server"]
    assert (eight.state, eight.exit_code, eight.elapsed, eight.ended) == ("FAILED", 3,
                                                                          "00:00:05", True)
    assert eight.usage["mem"] == "4kb" and eight.stdout_tail == ["last line"]
    assert infos["9.server"].reason == "killed by signal 15"
    assert (infos["10.server"].state, infos["10.server"].ended) == ("COMPLETED", True)
    assert infos["11"].state == "UNKNOWN" and infos["11"].ended
    assert translate(PBS_STATES, "Q") is JobState.PENDING
    assert translate(PBS_STATES, "E") is JobState.RUNNING
    assert PBS.submitted_id("1234.pbs-server.example.org\n") == "1234.pbs-server.example.org"


def test_a_line_break_in_what_becomes_a_directive_is_refused_naming_node_and_property() -> None:
    """``partition: "debug\\nrm -rf ~"`` would be a command of the job's shell: refused, on
    every scheduler, before anything is written."""
    from pathlib import Path

    import pytest

    from orch.executors.base import Artifact, Task
    from orch.executors.job_settings import JobSettings
    from orch.executors.schedulers import ScriptError

    for prop, value in (("partition", "debug\nrm -rf ~"), ("job_name", "a\rb"),
                        ("extra_options", ["--exclusive", "-x\n-y"])):  # fmt: skip
        task = Task(deployment="d", node="job", instance="job/0", interface="Runnable",
                    operation="submit", implementation=Artifact("slurm", Path("slurm")),
                    properties={"command": "true", prop: value})  # fmt: skip
        with pytest.raises(ScriptError, match=f"job: {prop} .* holds a line break"):
            JobSettings.of(task)
