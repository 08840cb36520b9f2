"""Verdicts, typed (verdicts.py), and the reports made of them: the grade report, the spec report, its plots."""
