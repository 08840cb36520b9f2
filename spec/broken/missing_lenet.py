"""Everything but LeNet."""

from mnist_lab import (  # noqa: F401
    RECIPES,
    backprop_deep,
    choose_device,
    evaluate,
    load,
    load_tensors,
    normalize_MNIST_images,
    show,
    to_torch_layout,
    train,
)
