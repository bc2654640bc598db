"""minidarts.classroom: the assignment tool (python -m minidarts assign)."""
