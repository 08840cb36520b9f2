"""backprop_deep shuffles once, then goes through the data in that order every epoch."""

import numpy as np
import torch
from torch import nn

from mnist_lab import *  # noqa: F403


def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=0.001, rho=0.9):
    N = len(xtrain)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=gamma, momentum=rho)
    order = np.random.permutation(N)  # the defect: drawn once, not every epoch
    for epoch in range(T):
        running_loss = 0.0
        for k in range((N + B - 1) // B):
            idx = order[B * k : B * (k + 1)]
            optimizer.zero_grad()
            loss = criterion(net(xtrain[idx]), ltrain[idx])
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if k % 100 == 99:
                print("[%d, %5d] loss: %.3f" % (epoch + 1, k + 1, running_loss / 100))
                running_loss = 0.0
