"""The reports of `python -m minidarts grade`: the printed table, grades.csv and the
JUnit XML (grades.xml) that GitHub Classroom or a CI reads. They take the TaskResult
records of classroom/grade.py."""

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

FIELDS = (
    "student",
    "task",
    "passed",
    "tests_passed",
    "tests_total",
    "score",
    "seconds",
    "message",
    "outside_edits",
)


def write_reports(results, out):
    """OUT/grades.csv (one row per student and task) and OUT/grades.xml (JUnit: a test
    suite per student, a test case per task). Returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for r in results:
            row = r._replace(
                passed="pass" if r.passed else "fail",
                score=f"{r.score:.3f}",
                seconds=f"{r.seconds:.1f}",
                outside_edits=";".join(r.outside_edits),
            )
            writer.writerow(row)
    suites = ET.Element("testsuites", name="minidarts grade")
    for student in dict.fromkeys(r.student for r in results):
        mine = [r for r in results if r.student == student]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=student,
            tests=str(len(mine)),
            failures=str(sum(not r.passed for r in mine)),
            errors="0",
            time=f"{sum(r.seconds for r in mine):.1f}",
        )
        edits = mine[0].outside_edits
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="outside_edits", value=";".join(edits))
        for r in mine:
            case = ET.SubElement(
                suite, "testcase", classname=student, name=r.task, time=f"{r.seconds:.1f}"
            )
            if not r.passed:
                text = f"{r.tests_passed}/{r.tests_total} tests passed: {r.message}"
                ET.SubElement(case, "failure", message=text).text = text
        if edits:
            ET.SubElement(suite, "system-out").text = "edited outside the regions: " + ", ".join(
                edits
            )
    ET.indent(suites)
    ET.ElementTree(suites).write(out / "grades.xml", encoding="utf-8", xml_declaration=True)
    return out / "grades.csv", out / "grades.xml"


def format_result(r):
    """One line of the table: task, pass/FAIL, tests passed/total (-/- where no report
    was read), the first failure (or a caveat on a pass)."""
    verdict = "pass" if r.passed else "FAIL"
    # no report read (not graded, timed out): no count, where 0/0 would read as no tests
    counts = f"{r.tests_passed:>3}/{r.tests_total:<3}" if r.tests_total else "  -/-  "
    line = f"  {r.task:<24} {verdict}  {counts}  {r.seconds:5.1f} s"
    message = r.message if len(r.message) <= 90 else r.message[:87] + "..."
    return line + (f"  {message}" if message else "")
