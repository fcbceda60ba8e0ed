"""The lesson rules, one subscription at a time, without a database (service.delivery.lessons
.plan): when each lesson is due, the reader's hour, one a day, the skips, and a file edited
while readers wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.core.content import READ_THROUGH, Regimen, load_content
from service.core.lessons import Lesson
from service.delivery.lessons import LATE, ReaderState, Skip, plan
from tests.helpers import DEFAULT_REGIMEN, PROJECT_ROOT

SHIPPED = load_content(PROJECT_ROOT / "content").regimens[DEFAULT_REGIMEN]
UNIT_1 = [exercise.slug for exercise in SHIPPED.units[0].exercises]
# The reader confirmed at 07:40 in the morning (UTC): every lesson goes out at 07:40.
CONFIRMED = datetime(2026, 3, 2, 7, 40, tzinfo=UTC)
DAY = timedelta(days=1)


def reader(settled: set[str] | None = None, done: set[str] | None = None,
           programs: set[str] | None = None) -> ReaderState:
    return ReaderState(confirmed_at=CONFIRMED, settled=frozenset(settled or ()),
                       done=frozenset(done or ()), programs_clicked=frozenset(programs or ()))


def with_lessons(*lessons: Lesson) -> Regimen:
    return SHIPPED.model_copy(update={"lessons": list(lessons)})


def lesson(key: str, after: int, body: str = "Hello.", **fields: object) -> Lesson:
    return Lesson.model_validate({"key": key, "after": f"{after} days", "subject": key,
                                  "body": body, **fields})


def test_nothing_is_due_before_the_first_delay() -> None:
    result = plan(SHIPPED, reader(), {}, CONFIRMED + DAY)
    assert result.send is None
    assert result.skipped == []
    assert result.next_at == CONFIRMED + 2 * DAY


def test_each_lesson_goes_out_at_the_hour_the_reader_confirmed() -> None:
    result = plan(SHIPPED, reader(), {}, CONFIRMED + 2 * DAY + timedelta(minutes=1))
    assert result.send is not None
    assert result.send.key == "how-it-should-feel"
    assert result.next_at == CONFIRMED + 5 * DAY
    after = plan(SHIPPED, reader({"how-it-should-feel"}), {}, CONFIRMED + 5 * DAY)
    assert after.send is not None
    assert after.send.key == "next-free-exercise"
    assert after.next_at == CONFIRMED + 12 * DAY
    last = plan(SHIPPED, reader({"how-it-should-feel", "next-free-exercise"}), {},
                CONFIRMED + 12 * DAY)
    assert last.send is not None
    assert last.next_at is None  # nothing left


def test_found_late_it_waits_for_the_readers_hour_the_next_day() -> None:
    """A worker that was down must not mail the reader at night."""
    slightly_late = plan(SHIPPED, reader(), {}, CONFIRMED + 2 * DAY + LATE)
    assert slightly_late.send is not None
    too_late = plan(SHIPPED, reader(), {}, CONFIRMED + 2 * DAY + LATE + timedelta(minutes=1))
    assert too_late.send is None
    assert too_late.next_at == CONFIRMED + 3 * DAY
    days_late = plan(SHIPPED, reader(), {}, CONFIRMED + 4 * DAY + timedelta(hours=10))
    assert days_late.next_at == CONFIRMED + 5 * DAY
    assert plan(SHIPPED, reader(), {}, CONFIRMED + 5 * DAY).send is not None


def test_at_most_one_lesson_a_day() -> None:
    """A worker down for a week finds several due: one now, the next a day later."""
    regimen = with_lessons(lesson("a", 1), lesson("b", 2), lesson("c", 3))
    now = CONFIRMED + 3 * DAY
    first = plan(regimen, reader(), {}, now)
    assert first.send is not None
    assert first.send.key == "a"
    assert first.next_at == now + DAY
    second = plan(regimen, reader({"a"}), {}, now + DAY)
    assert second.send is not None
    assert second.send.key == "b"


def test_a_lesson_about_an_exercise_done_is_skipped() -> None:
    result = plan(SHIPPED, reader(done={READ_THROUGH, "gentle-back-exercise"}), {},
                  CONFIRMED + 2 * DAY)
    assert result.send is None
    assert [(each.key, why) for each, why in result.skipped] == \
        [("how-it-should-feel", Skip.EXERCISE_DONE)]
    assert result.next_at == CONFIRMED + 5 * DAY


def test_a_lesson_skipped_once_unit_1_is_done_and_the_next_goes_out() -> None:
    regimen = with_lessons(lesson("a", 2, skip_if={"unit_done": 1}), lesson("b", 2))
    result = plan(regimen, reader(done=set(UNIT_1)), {}, CONFIRMED + 2 * DAY)
    assert [(each.key, why) for each, why in result.skipped] == [("a", Skip.UNIT_DONE)]
    assert result.send is not None
    assert result.send.key == "b"
    # Unit 1 not finished: the lesson goes out.
    half = plan(regimen, reader(done=set(UNIT_1[:-1])), {}, CONFIRMED + 2 * DAY)
    assert half.send is not None
    assert half.send.key == "a"


def test_a_pitch_is_not_sent_to_a_reader_who_followed_its_purchase_link() -> None:
    pitch = SHIPPED.lessons[-1]
    assert pitch.programs() == ["free_your_back"]
    settled = {"how-it-should-feel", "next-free-exercise"}
    skipped = plan(SHIPPED, reader(settled, programs={"free_your_back"}), {},
                   CONFIRMED + 12 * DAY)
    assert [(each.key, why) for each, why in skipped.skipped] == \
        [(pitch.key, Skip.PROGRAM_CLICKED)]
    # Another program's click does not count.
    sent = plan(SHIPPED, reader(settled, programs={"walking_better"}), {}, CONFIRMED + 12 * DAY)
    assert sent.send == pitch


def test_a_new_lesson_goes_only_to_readers_whose_delay_had_not_passed() -> None:
    regimen = with_lessons(lesson("old", 2), lesson("new", 3))
    settled = {"old"}
    # Added on day 4: this reader's day 3 had passed by then.
    too_late = plan(regimen, reader(settled), {"new": CONFIRMED + 4 * DAY}, CONFIRMED + 4 * DAY)
    assert too_late.send is None
    assert too_late.next_at is None
    # Added on day 2: their day 3 was still to come.
    in_time = plan(regimen, reader(settled), {"new": CONFIRMED + 2 * DAY}, CONFIRMED + 3 * DAY)
    assert in_time.send is not None
    assert in_time.send.key == "new"


def test_a_changed_delay_applies_to_readers_still_waiting() -> None:
    seen = {"a": CONFIRMED}
    moved_later = plan(with_lessons(lesson("a", 6)), reader(), seen, CONFIRMED + 2 * DAY)
    assert moved_later.send is None
    assert moved_later.next_at == CONFIRMED + 6 * DAY
    moved_earlier = plan(with_lessons(lesson("a", 1)), reader(), seen,
                         CONFIRMED + DAY + timedelta(minutes=5))
    assert moved_earlier.send is not None


def test_a_removed_lesson_is_not_planned_and_one_settled_never_again() -> None:
    regimen = with_lessons(lesson("b", 5))
    result = plan(regimen, reader(), {}, CONFIRMED + 2 * DAY)
    assert result.send is None
    assert result.next_at == CONFIRMED + 5 * DAY
    assert plan(regimen, reader({"b"}), {}, CONFIRMED + 9 * DAY).next_at is None
