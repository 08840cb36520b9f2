"""mnist_lab's own tests, beyond what the questions ask of it."""
