"""The assignment, one module a question: each declares it once, `pytestmark = pytest.mark.question("Q21")`."""
