"""The assignment, question by question, as tests (one module a question)."""
