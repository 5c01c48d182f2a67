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
