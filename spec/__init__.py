"""mnist-lab's executable specification of the assignment.

- questions/      the assignment, one pytest module a question (`pytest spec/questions --impl nb` grades)
- harness/        what runs them: the pytest plugin and fixtures, the contract, the implementation under test
- reports/        verdicts, typed, and the reports made of them (--grade-report, --report)
- sandbox/        the worker a notebook's code runs in, apart from the tests, and the plain data it sends back
- grade/          grading a folder of notebooks: `python -m spec.grade`
- package_tests/  mnist_lab's own tests, beyond the questions
- meta_tests/     the harness's own tests, beside the notebooks they grade
- benchmarks/     pytest-benchmark timings (`pytest spec --benchmark-only`)
"""
