"""minidarts.classroom: assignments from the library itself: `python -m minidarts assign`
writes a student copy (assign.py, with its STUDENT.md from guide.py), `python -m minidarts
grade` grades copies task by task (grade.py, its reports in report.py)."""
