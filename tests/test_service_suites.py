"""The comparison logic of tests/service_suites.py, on synthetic outcomes (no network, no services)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests import service_suites as ss
from tests.service_suites import Outcome

OK = Outcome(ss.PASSED)
SKIP = Outcome(ss.SKIPPED, "needs a database")
FAIL = Outcome(ss.FAILED, "AssertionError: 0 != 1")
ALLOWED = {"test/unit/common/test_utils.py::TestUtils::test_monkey_patch": "logging lock, documented"}


def fixed_reruns(
    tally: Mapping[str, tuple[Sequence[str], Sequence[str]]], asked: list[list[str]]
) -> ss.Rerunner:
    def rerun(tests: list[str]) -> Mapping[str, tuple[Sequence[str], Sequence[str]]]:
        asked.append(list(tests))
        return {t: tally[t] for t in tests}

    return rerun


def test_compare_sorts_breaks_from_other_changes() -> None:
    baseline = {"a": OK, "b": SKIP, "c": FAIL, "d": OK, "e": OK}
    patched = {"a": FAIL, "b": Outcome(ss.ERROR, "tearDown"), "c": OK, "d": OK, "f": OK}
    broken, other = ss.compare(baseline, patched)
    assert [t for t, _, _ in broken] == ["a", "b", "e"], broken
    assert broken[2][2].state == ss.MISSING, "a test the fairpool run did not report is a break"
    assert [(t, b.state, a.state) for t, b, a in other] == [
        ("c", ss.FAILED, ss.PASSED),
        ("f", ss.MISSING, ss.PASSED),
    ], other


def test_a_difference_that_fails_again_is_reported() -> None:
    asked: list[list[str]] = []
    broken, _ = ss.compare({"t::x": OK}, {"t::x": FAIL})
    rerun = fixed_reruns({"t::x": ([ss.PASSED, ss.PASSED], [ss.FAILED, ss.FAILED])}, asked)
    verdicts = ss.judge(broken, ALLOWED, rerun)
    assert [(v.test, v.status) for v in verdicts] == [("t::x", "fails")], verdicts
    assert asked == [["t::x"]], f"the difference should be rerun once, as a batch: {asked}"
    assert ss.report("svc", {"baseline": ({"t::x": OK}, 1.0)}, verdicts, []) == 1


def test_an_intermittent_failure_only_with_fairpool_still_counts() -> None:
    broken, _ = ss.compare({"t::x": OK}, {"t::x": FAIL})
    rerun = fixed_reruns({"t::x": ([ss.PASSED, ss.PASSED], [ss.PASSED, ss.ERROR])}, [])
    [verdict] = ss.judge(broken, ALLOWED, rerun)
    assert verdict.status == "fails", verdict
    assert verdict.reruns == ((ss.PASSED, ss.PASSED), (ss.PASSED, ss.ERROR)), verdict


def test_an_allowed_difference_is_not_reported_nor_rerun() -> None:
    test = "test/unit/common/test_utils.py::TestUtils::test_monkey_patch"
    asked: list[list[str]] = []
    broken, _ = ss.compare({test: OK}, {test: FAIL})
    verdicts = ss.judge(broken, ALLOWED, fixed_reruns({}, asked))
    assert [(v.status, v.why) for v in verdicts] == [("allowed", "logging lock, documented")], verdicts
    assert asked == [], "an allowed difference needs no rerun"
    assert ss.report("svc", {}, verdicts, []) == 0


@pytest.mark.parametrize(
    ("plain", "fair", "why"),
    [
        ([ss.PASSED, ss.PASSED], [ss.PASSED, ss.PASSED], "passes with fairpool on rerun"),
        ([ss.PASSED, ss.FAILED], [ss.FAILED, ss.FAILED], "fails without fairpool on rerun"),
    ],
)
def test_a_flaky_difference_is_not_reported(plain: list[str], fair: list[str], why: str) -> None:
    test = "test/unit/common/test_utils.py::TestCooperativeCachePopulator::test_x"
    broken, _ = ss.compare({test: OK}, {test: FAIL})
    [verdict] = ss.judge(broken, ALLOWED, fixed_reruns({test: (plain, fair)}, []))
    assert (verdict.status, verdict.why) == ("flaky", why), verdict
    assert ss.report("svc", {}, [verdict], []) == 0


def test_without_reruns_a_difference_counts() -> None:
    broken, _ = ss.compare({"t::x": OK}, {"t::x": FAIL})
    [verdict] = ss.judge(broken, ALLOWED, None)
    assert (verdict.status, verdict.why) == ("fails", "not rerun"), verdict


def test_a_test_missing_from_a_rerun_counts_as_failing_there() -> None:
    broken, _ = ss.compare({"t::x": OK}, {"t::x": FAIL})
    rerun = fixed_reruns({"t::x": ([ss.PASSED], [ss.MISSING])}, [])
    [verdict] = ss.judge(broken, ALLOWED, rerun)
    assert verdict.status == "fails", verdict


def test_parse_junit_names_tests_by_node_id_and_keeps_the_worst(tmp_path: Path) -> None:
    (tmp_path / "test" / "unit").mkdir(parents=True)
    (tmp_path / "test" / "unit" / "test_a.py").write_text("")
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="test.unit.test_a.TestA" name="test_ok"/>'
        '<testcase classname="test.unit.test_a.TestA" name="test_bad">'
        '<failure message="AssertionError: boom">trace</failure></testcase>'
        '<testcase classname="test.unit.test_a.TestA" name="test_bad"><error message="teardown"/></testcase>'
        '<testcase classname="test.unit.test_a.TestA" name="test_skip"><skipped message="no db"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert ss.parse_junit(report, tmp_path) == {
        "test/unit/test_a.py::TestA::test_ok": OK,
        "test/unit/test_a.py::TestA::test_bad": Outcome(ss.FAILED, "AssertionError: boom"),
        "test/unit/test_a.py::TestA::test_skip": Outcome(ss.SKIPPED, "no db"),
    }


def test_the_workdir_may_not_be_inside_the_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    assert ss.main(["nova", "--workdir", str(ss.REPO / "build" / "suites")]) == 2
    assert "inside the checkout" in capsys.readouterr().err


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ss.parse_args(["swift", "--rerun", "-1"])
    assert "--rerun must be >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ss.parse_args(["all", "--targets", "x"])
    assert "--targets needs one service" in capsys.readouterr().err
