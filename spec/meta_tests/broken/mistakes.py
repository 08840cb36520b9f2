"""The common mistakes of this assignment, each as a change to the printed solution.

    python -m spec.meta_tests.broken.mistakes     # writes spec/meta_tests/broken/<name>.ipynb from the table below

Each mistake names the questions it breaks; meta_tests/test_can_fail.py grades its notebook on the questions
of its kind (`RUNS`) and expects exactly those to fail, and meta_tests/test_contract.py checks that the
committed notebooks are the ones this table writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent
SOLUTION = FOLDER.parent / "fixtures" / "printed_solution.ipynb"

# The questions each kind of mistake is graded on, quickly (no training run): those a mistake of the kind
# can break, and a neighbour or two; the ones a mistake does not break must pass.
RUNS = {
    "normalisation": ("Q21", "Q22", "Q23", "Q24"),
    "layout": ("Q21", "Q22", "Q24", "Q25", "Q26"),
    "network": ("Q25", "Q26", "Q27"),
    "optimiser": ("Q27", "Q29-Q30"),
    "minibatching": ("Q27", "Q29-Q30"),
    "printing": ("Q27", "Q29-Q30"),
}


@dataclass(frozen=True)
class Mistake:
    kind: str  # a key of RUNS
    what: str
    old: str  # text of the printed solution
    new: str  # what the mistake puts in its place
    breaks: tuple[str, ...]


MISTAKES = {
    "normalize_to_0_1": Mistake(
        "normalisation", "pixels mapped to [0, 1], not [-1, 1]",
        "ret = 2*(fl_x - 255/2.0) / 255", "ret = fl_x / 255", ("Q21", "Q22", "Q24"),
    ),
    "normalize_min_max": Mistake(
        "normalisation", "min-max normalisation: right on MNIST, wrong for an image without a 0 or a 255",
        "ret = 2*(fl_x - 255/2.0) / 255", "ret = 2*(fl_x - fl_x.min()) / (fl_x.max() - fl_x.min()) - 1", ("Q21",),
    ),
    "normalize_float64": Mistake(
        "normalisation", "images left in float64",
        "fl_x = x.astype(np.float32)", "fl_x = x.astype(np.float64)", ("Q21", "Q24"),
    ),
    "images_as_rows": Mistake(
        "layout", "normalize_MNIST_images returns one image a row, (N, 784), not the columns it was given",
        "    return ret", "    return ret.T", ("Q21", "Q22", "Q23", "Q24"),
    ),
    "flatten_channels_last": Mistake(
        "layout", "the feature maps flattened channels last",
        "x = x.view(-1, self.num_flat_features(x))", "x = x.permute(0, 2, 3, 1).reshape(-1, self.num_flat_features(x))",
        ("Q26",),
    ),
    "cifar_lenet": Mistake(
        "network", "the tutorial's LeNet for 32x32 images: fc1 takes 16*5*5 = 400 features",
        "self.fc1 = nn.Linear(256, 120)", "self.fc1 = nn.Linear(16*5*5, 120)", ("Q25", "Q26", "Q27"),
    ),
    "wrong_layer_size": Mistake(
        "network", "fc2 has 100 units, not 84",
        "self.fc2 = nn.Linear(120, 84)\n", "self.fc2 = nn.Linear(120, 100)\n", ("Q25", "Q26", "Q27"),
    ),
    "average_pooling": Mistake(
        "network", "average pooling instead of max pooling",
        "x = F.max_pool2d(F.relu(self.conv2(x)), (2, 2))", "x = F.avg_pool2d(F.relu(self.conv2(x)), (2, 2))", ("Q26",),
    ),
    "double_layers": Mistake(
        "network", "the layers cast to float64 for float64 images",
        "        self.fc3 = nn.Linear(84, 10)\n", "        self.fc3 = nn.Linear(84, 10)\n        self.double()\n",
        ("Q25", "Q26"),
    ),
    "no_momentum": Mistake(
        "optimiser", "SGD without momentum: rho is ignored",
        "lr=gamma, momentum=rho)", "lr=gamma)", ("Q29-Q30",),
    ),
    "no_zero_grad": Mistake(
        "optimiser", "gradients never zeroed: each step adds up every gradient so far",
        "            optimizer.zero_grad()\n", "", ("Q29-Q30",),
    ),
    "torch_0_3_loss": Mistake(
        "optimiser", "torch 0.3's `loss.data[0]`, an error on a 0-dimensional tensor today",
        "running_loss += loss.item()", "running_loss += loss.data[0]", ("Q29-Q30",),
    ),
    "fixed_blocks": Mistake(
        "minibatching", "minibatches as fixed blocks of B images taken in shuffled order",
        "shuffled_indices = np.random.permutation(range(N))\n        for k in range(NB):\n"
        "            # Extract the k-th minibatch from xtrain and ltrain\n"
        "            # get the shuffled indices for a given minibatch\n"
        "            minibatch_indices = shuffled_indices[B*k:min(B*(k+1), N)]",
        "shuffled_indices = np.random.permutation(NB)\n        for k in range(NB):\n"
        "            # Extract the k-th minibatch from xtrain and ltrain\n"
        "            minibatch_indices = range(shuffled_indices[k]*B, min((shuffled_indices[k]+1)*B, N))",
        ("Q29-Q30",),
    ),
    "drops_last_minibatch": Mistake(
        "minibatching", "NB = N // B: the last, short minibatch is never used",
        "NB = int((N+B-1)/B)", "NB = N // B", ("Q29-Q30",),
    ),
    "no_reshuffle": Mistake(
        "minibatching", "one permutation, drawn before the first epoch",
        "    for epoch in range(T):\n        running_loss = 0.0\n\n        # shuffle the indices to access the data\n"
        "        shuffled_indices = np.random.permutation(range(N))\n",
        "    shuffled_indices = np.random.permutation(range(N))\n"
        "    for epoch in range(T):\n        running_loss = 0.0\n",
        ("Q29-Q30",),
    ),
    "prints_the_sum": Mistake(
        "printing", "prints the sum of 100 losses, not their mean",
        "(epoch + 1, k + 1, running_loss / 100))", "(epoch + 1, k + 1, running_loss))", ("Q29-Q30",),
    ),
}  # fmt: skip


def notebook(name: str) -> Any:
    """The printed solution with mistake `name` made in the one cell that holds its text."""
    import nbformat  # the test extra's, as grading's

    mistake = MISTAKES[name]
    book = nbformat.read(SOLUTION, as_version=4)
    holding = [cell for cell in book.cells if cell.cell_type == "code" and mistake.old in cell.source]
    assert len(holding) == 1, f"{name}: {len(holding)} cells hold {mistake.old!r}, not 1"
    holding[0].source = holding[0].source.replace(mistake.old, mistake.new)
    book.cells.insert(0, nbformat.v4.new_markdown_cell(f"A broken solution: {mistake.what}."))
    return book


def path(name: str) -> Path:
    return FOLDER / f"{name}.ipynb"


def main() -> None:
    import nbformat

    for name in MISTAKES:
        nbformat.write(notebook(name), path(name))
        print(path(name))


if __name__ == "__main__":
    main()
