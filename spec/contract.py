"""The graded contract, in one place: what an implementation provides, and what each question asks of it.

A student of the assignment writes three functions; the course hands out `MNISTtools` (`load`, `show`).
Everything else a notebook does (layout, tensors, device, training calls, accuracy) is top-level code,
which `spec/cells.py` does for it. A question is graded (it says something about the implementation's
own code) when it uses a name the student writes; questions 1-20 test PyTorch itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Name:
    signature: str
    written_by: str  # "student", or "course" (MNISTtools)


CONTRACT = {
    "normalize_MNIST_images": Name(
        "normalize_MNIST_images(x): uint8 [0, 255] -> float32 [-1, 1], same shape", "student"
    ),
    "LeNet": Name("LeNet(): the nn.Module of Q26 (conv1, conv2, fc1, fc2, fc3)", "student"),
    "backprop_deep": Name(
        "backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9): SGD with momentum on the cross-entropy, "
        "printing '[epoch, k] loss: x.xxx' every 100 minibatches",
        "student",
    ),
    "load": Name(
        "MNISTtools.load(dataset='training' or 'testing', path): images (784, N) uint8, labels (N,)", "course"
    ),
    "show": Name("MNISTtools.show(image): draws one 28x28 digit", "course"),
}
STUDENT_NAMES = frozenset(name for name, entry in CONTRACT.items() if entry.written_by == "student")


@dataclass(frozen=True)
class Question:
    title: str
    uses: tuple[str, ...] = ()  # the contract names its tests ask the implementation for

    @property
    def graded(self) -> bool:
        return bool(STUDENT_NAMES.intersection(self.uses))


DATA = ("load",)
QUESTIONS = {
    "Q1": Question("An uninitialised 5x3 tensor"),
    "Q2": Question("torch.rand and torch.randn"),
    "Q3": Question(".double()"),
    "Q4": Question("Tensors from lists"),
    "Q5": Question("torch.stack and torch.cat"),
    "Q6": Question("Indexing"),
    "Q7": Question("Slicing"),
    "Q8": Question("Addition"),
    "Q9": Question("view"),
    "Q10": Question("torch.mm"),
    "Q11": Question("Tensor to NumPy"),
    "Q12": Question("Shared memory"),
    "Q13": Question("In place against new tensors"),
    "Q14": Question("torch.from_numpy"),
    "Q15": Question("Choosing a device"),
    "Q16": Question("A CUDA tensor to NumPy"),
    "Q17": Question("requires_grad"),
    "Q18": Question("The graph"),
    "Q19": Question("backward"),
    "Q20": Question("The gradient by hand"),
    "Q21": Question("Normalising the images to [-1, 1]", (*DATA, "normalize_MNIST_images")),
    "Q22": Question("The torch layout, N x 1 x 28 x 28", (*DATA, "normalize_MNIST_images")),
    "Q23": Question("Image 42 and its label", (*DATA, "normalize_MNIST_images", "show")),
    "Q24": Question("The data as torch tensors", (*DATA, "normalize_MNIST_images")),
    "Q25": Question("LeNet's feature maps", (*DATA, "LeNet")),
    "Q26": Question("The LeNet class", (*DATA, "LeNet")),
    "Q27": Question("LeNet's parameters", ("LeNet",)),
    "Q28": Question("An untrained LeNet is at chance", (*DATA, "LeNet")),
    "Q29-Q30": Question(
        "backprop_deep: SGD with momentum, minibatches, the printed loss", (*DATA, "LeNet", "backprop_deep")
    ),
    "Q31": Question("Test accuracy after 3 epochs", (*DATA, "LeNet", "backprop_deep")),
    "Q32": Question("10 epochs on the device", (*DATA, "LeNet", "backprop_deep")),
    "Q33": Question("Test accuracy after 10 epochs", (*DATA, "LeNet", "backprop_deep")),
}

_MODULE = re.compile(r"test_q(\d+)(?:_q(\d+))?_")


def question_of(module_name: str) -> str | None:
    """'spec/test_q29_q30_backprop_deep.py' -> 'Q29-Q30'; None for a module that is no question."""
    match = _MODULE.search(module_name)
    if not match:
        return None
    first, last = match.groups()
    return f"Q{int(first)}" + (f"-Q{int(last)}" if last else "")


def markdown() -> str:
    """The contract as the README shows it (test_spec_contract.py keeps the two equal)."""
    lines = ["| name | written by | what the spec expects |", "|---|---|---|"]
    lines += [f"| `{name}` | {entry.written_by} | {entry.signature} |" for name, entry in CONTRACT.items()]
    lines += ["", "| question | graded | uses |", "|---|---|---|"]
    for q, question in QUESTIONS.items():
        uses = ", ".join(f"`{name}`" for name in question.uses) or "PyTorch only"
        lines.append(f"| {q}: {question.title} | {'yes' if question.graded else 'no'} | {uses} |")
    return "\n".join(lines)
