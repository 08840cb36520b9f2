"""backprop_deep ignores rho: plain SGD."""

import mnist_lab
from mnist_lab import *  # noqa: F403


def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=0.001, rho=0.9):
    return mnist_lab.backprop_deep(xtrain, ltrain, net, T, B=B, gamma=gamma, rho=0.0)
