"""Where a reader stands in a regimen, from the steps they marked done (no database)."""

from __future__ import annotations

from service.core.content import READ_THROUGH, load_content
from service.readers.progress import is_step, standing
from tests.helpers import DEFAULT_REGIMEN, PROJECT_ROOT

REGIMEN = load_content(PROJECT_ROOT / "content").regimens[DEFAULT_REGIMEN]
UNIT_1 = [exercise.slug for exercise in REGIMEN.units[0].exercises]


def test_nothing_done_starts_with_reading_it_through() -> None:
    nothing = standing(REGIMEN, frozenset())
    assert not nothing.started
    assert not nothing.read_through
    assert nothing.continue_with == REGIMEN.exercises()[0]
    assert [(each.done, each.total) for each in nothing.units] == [(0, 5), (0, 3), (0, 2)]
    assert nothing.next_steps_of is None


def test_continue_with_is_the_first_exercise_not_done_in_order() -> None:
    skipped_one = standing(REGIMEN, frozenset({READ_THROUGH, UNIT_1[0], UNIT_1[2]}))
    assert skipped_one.continue_with is not None
    assert skipped_one.continue_with.slug == UNIT_1[1]
    assert [each.done for each in skipped_one.units] == [2, 0, 0]


def test_a_finished_unit_offers_its_next_steps_until_a_later_one_has_its_own() -> None:
    unit_1_done = standing(REGIMEN, frozenset(UNIT_1))
    assert unit_1_done.next_steps_of is not None
    assert unit_1_done.next_steps_of.number == 1
    assert [step.program for step in unit_1_done.next_steps_of.unit.next_steps] == \
        ["free_your_back", None]
    assert unit_1_done.continue_with == REGIMEN.units[1].exercises[0]
    everything = standing(REGIMEN, frozenset(e.slug for e in REGIMEN.exercises()))
    assert everything.continue_with is None
    assert all(each.finished for each in everything.units)
    # Units 2 and 3 have no next steps of their own: Unit 1's still stand.
    assert everything.next_steps_of is not None
    assert everything.next_steps_of.number == 1


def test_steps_the_author_removed_no_longer_count() -> None:
    gone = standing(REGIMEN, frozenset({"an-old-exercise", UNIT_1[0]}))
    assert gone.done == {UNIT_1[0]}
    assert gone.units[0].done == 1


def test_the_steps_are_reading_it_through_and_the_exercises() -> None:
    assert is_step(REGIMEN, READ_THROUGH)
    assert all(is_step(REGIMEN, exercise.slug) for exercise in REGIMEN.exercises())
    assert not is_step(REGIMEN, "lying-head-turn")  # the other regimen's
    assert not is_step(REGIMEN, "")


def test_an_edited_regimen_is_stood_in_as_edited() -> None:
    # Standings are worked out once per regimen and steps done: the edited regimen (a new
    # object, the same key) must not be given the standing worked out for the old one.
    done = frozenset(UNIT_1[:2])
    before = standing(REGIMEN, done)
    shorter = REGIMEN.units[0].model_copy(update={"exercises": REGIMEN.units[0].exercises[1:]})
    edited = REGIMEN.model_copy(update={"units": [shorter, *REGIMEN.units[1:]]})
    after = standing(edited, done)
    assert [(each.done, each.total) for each in before.units][0] == (2, 5)
    assert [(each.done, each.total) for each in after.units][0] == (1, 4)
    assert standing(REGIMEN, done) is before
