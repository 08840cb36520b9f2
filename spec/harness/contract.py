"""The graded contract, in one place: what an implementation provides, and what each question asks of it.

A student of the assignment writes three functions; the course hands out `MNISTtools` (`load`, `show`).
Everything else a notebook does (layout, tensors, device, training calls, accuracy) is top-level code,
which `spec/harness/cells.py` does for it. A question is graded (it says something about the implementation's
own code) when it uses a name the student writes; questions 1-20 test PyTorch itself.

Each question module in spec/questions declares its question once, as its `pytestmark`:
`pytest.mark.question("Q21")`, a key of QUESTIONS; the plugin reads it at collection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    printed: str = ""  # what the assignment printed or documented, in short (the report's column)

    @property
    def graded(self) -> bool:
        return bool(STUDENT_NAMES.intersection(self.uses))


DATA = ("load",)
QUESTIONS = {
    "Q1": Question("An uninitialised 5x3 tensor", printed="a 5x3 torch.FloatTensor of whatever memory held"),
    "Q2": Question("torch.rand and torch.randn", printed="5x3 float32: rand in [0, 1), randn standard normal"),
    "Q3": Question(".double()", printed="float64, the same values"),
    "Q4": Question("Tensors from lists", printed="x and y, 5x3, the printed values"),
    "Q5": Question("torch.stack and torch.cat", printed="stack (2, 5, 3); cat (10, 3) and (5, 6)"),
    "Q6": Question("Indexing", printed="y[4, 2] = z[1, 4, 2] = 1.3209999799728394"),
    "Q7": Question("Slicing", printed="z[:, 4, 2] = tensor([0.1092, 1.3210])"),
    "Q8": Question("Addition", printed="x + y = [[0.2979, 1.9792, 0.7991], ...]"),
    "Q9": Question("view", printed="view(16): (16,); view(-1, 8): (2, 8)"),
    "Q10": Question("torch.mm", printed="(1, 100) x (100, 2) = (1, 2)"),
    "Q11": Question("Tensor to NumPy", printed="[1. 1. 1. 1. 1.], float32"),
    "Q12": Question("Shared memory", printed="a[0] += 1 shows in b: [2. 1. 1. 1. 1.]"),
    "Q13": Question("In place against new tensors", printed="a = a.add(1): a [5, 4, 4, 4, 4], b stays [4, 3, 3, 3, 3]"),
    "Q14": Question("torch.from_numpy", printed="float64, sharing memory: [2. 2. 2. 2. 2.]"),
    "Q15": Question("Choosing a device", printed="x, y and x + y on cuda:0"),
    "Q16": Question("A CUDA tensor to NumPy", printed="z.numpy() on CUDA: TypeError, use Tensor.cpu()"),
    "Q17": Question("requires_grad", printed="y.grad_fn AddBackward0; x.grad, y.grad None"),
    "Q18": Question("The graph", printed="z all 27, f = 27; MulBackward0, MeanBackward0"),
    "Q19": Question("backward", printed="x.grad all 4.5"),
    "Q20": Question("The gradient by hand", printed="df/dx_i = 1.5 x_i + 3 = 4.5 at x = 1"),
    "Q21": Question(
        "Normalising the images to [-1, 1]",
        (*DATA, "normalize_MNIST_images"),
        printed="0 -> -1, 127.5 -> 0, 255 -> 1, float32",
    ),
    "Q22": Question(
        "The torch layout, N x 1 x 28 x 28",
        (*DATA, "normalize_MNIST_images"),
        printed="(60000, 1, 28, 28) and (10000, 1, 28, 28)",
    ),
    "Q23": Question(
        "Image 42 and its label", (*DATA, "normalize_MNIST_images", "show"), printed="training image 42: a 7, label 7"
    ),
    "Q24": Question(
        "The data as torch tensors",
        (*DATA, "normalize_MNIST_images"),
        printed="float32 images, int64 labels, 60,000 and 10,000",
    ),
    "Q25": Question(
        "LeNet's feature maps", (*DATA, "LeNet"), printed="6x24x24, 6x12x12, 16x8x8, 16x4x4 = 256 features"
    ),
    "Q26": Question("The LeNet class", (*DATA, "LeNet"), printed="print(net): conv1, conv2, fc1, fc2, fc3"),
    "Q27": Question("LeNet's parameters", ("LeNet",), printed="10 parameter tensors, 44,426 numbers"),
    "Q28": Question("An untrained LeNet is at chance", (*DATA, "LeNet"), printed="11.92% and 9.69% untrained"),
    "Q29-Q30": Question(
        "backprop_deep: SGD with momentum, minibatches, the printed loss",
        (*DATA, "LeNet", "backprop_deep"),
        printed="first loss 2.301, 0.209 after 3 epochs",
    ),
    "Q31": Question(
        "Test accuracy after 3 epochs", (*DATA, "LeNet", "backprop_deep"), printed="94.41% after 3 epochs (CPU)"
    ),
    "Q32": Question(
        "10 epochs on the device",
        (*DATA, "LeNet", "backprop_deep"),
        printed="10 epochs on the GPU, the loss down to about 0.08",
    ),
    "Q33": Question(
        "Test accuracy after 10 epochs",
        (*DATA, "LeNet", "backprop_deep"),
        printed="98.17% after 10 epochs; the GPU no better per epoch",
    ),
}


class QuestionsError(ValueError):
    """A list of questions that names none, or one that is no question: one line, the same everywhere."""


def parse_questions(given: str | Iterable[str]) -> list[str]:
    """'Q21, q26', '21' or ['Q29'] -> ['Q21', 'Q26'] or ['Q29-Q30'], in the assignment's order: the one reader
    of a list of questions (pytest's --questions, the batch's, check()'s)."""
    names = re.split(r"[,\s]+", given) if isinstance(given, str) else [str(q) for q in given]
    wanted, unknown = set(), []
    for text in (q.strip().upper() for q in names if q.strip()):
        text = text if text.startswith("Q") else f"Q{text}"
        found = [q for q in QUESTIONS if q == text or text in q.split("-")]  # Q29 and Q30 are "Q29-Q30"
        wanted.update(found)
        unknown += [] if found else [text]
    if unknown or not wanted:
        raise QuestionsError(f"{'no such question: ' + ', '.join(unknown) if unknown else 'no question named'} "
                             f"(the questions are {', '.join(QUESTIONS)})")  # fmt: skip
    return [q for q in QUESTIONS if q in wanted]


def markdown() -> str:
    """The contract as docs/spec.md shows it (meta_tests/test_contract.py keeps the two equal)."""
    lines = ["| name | written by | what the spec expects |", "|---|---|---|"]
    lines += [f"| `{name}` | {entry.written_by} | {entry.signature} |" for name, entry in CONTRACT.items()]
    lines += ["", "| question | graded | uses |", "|---|---|---|"]
    for q, question in QUESTIONS.items():
        uses = ", ".join(f"`{name}`" for name in question.uses) or "PyTorch only"
        lines.append(f"| {q}: {question.title} | {'yes' if question.graded else 'no'} | {uses} |")
    return "\n".join(lines)
