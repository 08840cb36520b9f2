"""Values the assignment prints, kept verbatim as the expected values of the spec."""

from __future__ import annotations

# Q4: the two 5x3 tensors later questions build on.
X = [
    [-0.1859, 1.3970, 0.5236],
    [2.3854, 0.0707, 2.1970],
    [-0.3587, 1.2359, 1.8951],
    [-0.1189, -0.1376, 0.4647],
    [-1.8968, 2.0164, 0.1092],
]
Y = [
    [0.4838, 0.5822, 0.2755],
    [1.0982, 0.4932, -0.6680],
    [0.7915, 0.6580, -0.5819],
    [0.3825, -1.1822, 1.5217],
    [0.6042, -0.2280, 1.3210],
]
# Q6: y[4, 2] as float32, printed by .item().
Y_4_2 = 1.3209999799728394
# Q7: z[:, 4, 2].
Z_COLUMN = [0.1092, 1.3210]
# Q8: x + y, printed to 4 decimals.
X_PLUS_Y = [
    [0.2979, 1.9792, 0.7991],
    [3.4836, 0.5639, 1.5290],
    [0.4328, 1.8939, 1.3132],
    [0.2636, -1.3198, 1.9864],
    [-1.2926, 1.7884, 1.4302],
]
# Q26: print(net).
LENET_REPR = """LeNet(
  (conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))
  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
  (fc1): Linear(in_features=256, out_features=120, bias=True)
  (fc2): Linear(in_features=120, out_features=84, bias=True)
  (fc3): Linear(in_features=84, out_features=10, bias=True)
)"""
# Q27: named_parameters(), in order.
LENET_PARAMETERS = [
    ("conv1.weight", (6, 1, 5, 5)),
    ("conv1.bias", (6,)),
    ("conv2.weight", (16, 6, 5, 5)),
    ("conv2.bias", (16,)),
    ("fc1.weight", (120, 256)),
    ("fc1.bias", (120,)),
    ("fc2.weight", (84, 120)),
    ("fc2.bias", (84,)),
    ("fc3.weight", (10, 84)),
    ("fc3.bias", (10,)),
]
LENET_PARAMETER_COUNT = 44_426
# Q31 and Q33: the printed test accuracy (%) by number of epochs (3 on the CPU, 10 on the GPU).
PRINTED_ACCURACY = {3: 94.41, 10: 98.17}
# The printed 3-epoch CPU loss log of Q30: [epoch, minibatch, loss].
PRINTED_LOSS_3_EPOCHS = [
    [1, 100, 2.301], [1, 200, 2.292], [1, 300, 2.282], [1, 400, 2.264], [1, 500, 2.228], [1, 600, 2.139],
    [2, 100, 1.833], [2, 200, 1.205], [2, 300, 0.644], [2, 400, 0.442], [2, 500, 0.364], [2, 600, 0.314],
    [3, 100, 0.273], [3, 200, 0.261], [3, 300, 0.243], [3, 400, 0.228], [3, 500, 0.223], [3, 600, 0.209],
]  # fmt: skip

# The real MNIST: label counts and first labels of each split (data/mnist, checked by its SHA256SUMS).
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_FIRST_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
TRAIN_LABEL_42 = 7  # Q23, printed
TEST_LABEL_42 = 4  # Q23, not printed; the real data's
