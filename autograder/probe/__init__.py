"""Probe runtime and wire format: the grader asks a student's process for outputs (see autograder/README.md)."""
