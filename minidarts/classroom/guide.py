"""STUDENT.md, the student's guide that `python -m minidarts assign` writes into each copy.

It lists the tasks handed out in course order with the file and function of each (read
from the solution regions in the package, so it cannot drift from the code), the
commands to test one task and to grade oneself, and the lessons: which to read before
starting, and which explain a task's answer and so come after it (the assignment tool
holds those back from the copy; see LESSON_SOLVES).
"""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]

# lesson file -> the tasks whose answer it derives: held back from a copy in which one of
# them is stubbed, released by the teacher once the task is graded
LESSON_SOLVES = {
    "01_derivatives.py": ("numerical_grad",),
    "03_broadcasting_softmax.py": (
        "backward_mul",
        "backward_matmul",
        "backward_softmax",
        "backward_cross_entropy",
    ),
    "04_convolution.py": ("im2col",),
    "06_candidate_operations.py": ("mixed_op",),
    "07_cell_and_network.py": ("cell", "genotype"),
    "08_bilevel.py": ("bilevel_step",),
    "09_hypernetwork.py": ("hypernet", "complexity"),
    # these two call numerical_grad, and 05 derives a product's backward on its way
    # to batch norm's (what backward_mul asks for)
    "05_pooling_batchnorm.py": ("numerical_grad", "backward_mul"),
    "11_second_order.py": ("numerical_grad",),
}
# background that solves no task: read before starting
READ_FIRST = ("02_autograd.py",)
# the tasks a lesson handed out with every task stubbed needs in order to run in full
# (tests/test_assign.py runs it with exactly these solved)
LESSON_NEEDS = {"02_autograd.py": ("numerical_grad", "backward_mul")}

_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:def|class) (?P<name>\w+)")


def enclosing_function(path, line):
    """'Class.method' or 'function' around the 0-based `line` of the source file."""
    lines = Path(path).read_text().splitlines()
    names, limit = [], len(lines[line]) - len(lines[line].lstrip())
    for text in reversed(lines[:line]):
        m = _DEF.match(text)
        if m and len(m["indent"]) < limit:
            names.append(m["name"])
            limit = len(m["indent"])
            if limit == 0:
                break
    return ".".join(reversed(names)) or "(module level)"


def held_lessons(tasks):
    """The lesson files that derive the answer of one of `tasks` (see LESSON_SOLVES)."""
    return sorted(name for name, solves in LESSON_SOLVES.items() if set(solves) & set(tasks))


def student_guide(tasks, held=(), hinted=()):
    """The text of STUDENT.md for a copy in which `tasks` (ids, in course order) are
    stubbed, the lessons `held` held back, and the stubs of `hinted` carry hints."""
    from .assign import TASKS, package_regions

    regions = package_regions()
    rows = []
    for i, (task, _, what) in enumerate(TASKS, 1):
        if task not in tasks:
            continue
        file, line = regions[task][0]
        function = enclosing_function(PACKAGE / file, line - 1)
        rows.append(f"| {i} | `{task}` | `minidarts/{file}` | `{function}` | {what} |")
    after = [
        f"- `{task}`: lessons/{name}"
        for task in tasks
        for name, solves in LESSON_SOLVES.items()
        if task in solves
    ]
    hint_line = (
        f"\n\nThe `# HINT:` lines above the stubs of {', '.join(f'`{t}`' for t in hinted)} say "
        "how to go about it; try without them first."
        if hinted
        else ""
    )
    # of the tasks a lesson needs, those stubbed in this copy (the others are solved)
    stubbed = {name: [t for t in LESSON_NEEDS.get(name, ()) if t in tasks] for name in READ_FIRST}
    needs = "".join(
        f" ({name} needs {' and '.join(f'`{t}`' for t in ts)})"
        for name, ts in stubbed.items()
        if ts
    )
    held_line = (
        f"Held back from this copy until your teacher releases them: {', '.join(held)}."
        if held
        else "All lessons are in this copy."
    )
    return f"""# Your assignment

You write the heart of a small DARTS implementation: {len(rows)} pieces of code, each
marked in the library itself by two lines:

```
        # BEGIN YOUR SOLUTION numerical_grad
        raise NotImplementedError("numerical_grad: ...")
        # END YOUR SOLUTION
```

Replace the `raise` line with your code, between the two markers, at the same
indentation. Write nothing outside the markers: grading copies only the lines between
them into the course's own code and runs the course's own tests, so an edit elsewhere
is not graded and is reported to your teacher. Keep the two marker lines as they are.

## The tasks, in order

| # | task | file | function | what you write |
|---|---|---|---|---|
{chr(10).join(rows)}

Each task is graded on its own: another task left unfinished does not fail it. The
docstring of the function and the stub's message say what to compute; the tests of the
task (`python -m pytest -m TASK --collect-only -q` lists them) say what is checked.{hint_line}

## Test one task

```
python -m pytest -m numerical_grad          # the tests of one task
python -m pytest -m numerical_grad -x -q    # stop at the first failure
python -m pytest                            # everything; ends with a line per task
```

In your copy the tasks use each other (every gradient check calls `numerical_grad`,
the cell calls the mixed operation, which calls the convolution), so a task's tests can
fail in a task you have not finished yet. The failure then names it:
`task <yours> needs task <that one> first (<function> in <file>): NotImplementedError:
...`, and so do your task's line at the end of the run and `python -m minidarts grade .`.
Only an unfinished task is named so: a mistake in a task you have done fails the tests
of the tasks that use it with that mistake's error (a gradient of the wrong shape, a
wrong number), under their names. Do the tasks in order, and see each one pass before
the next.

## Grade yourself

```
python -m minidarts grade .
```

prints one line per task (pass or fail, tests passed out of total, the first failure)
and a total, as your teacher's grading does; it also lists the files you changed
outside the markers. Your teacher grades with the course's solutions of the other tasks
in place, so there a task fails only for its own mistakes.

## Lessons

`lessons/` holds numbered scripts (`python lessons/02_autograd.py`). Read
{", ".join(f"`{name}`" for name in READ_FIRST)} before you start: how the engine records a
computation and runs its backward. A lesson runs the library, your stubs included: it
stops at the first task it reaches that you have not done, with that task's
NotImplementedError, and runs in full once they are done{needs}.
A lesson that works out a task's answer comes after that task:

{chr(10).join(after) or "- (none)"}

{held_line}
"""
