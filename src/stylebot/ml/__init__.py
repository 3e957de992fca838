"""Pure compute: NST backbones, multi-style NST, CycleGAN generators, and the weights registry.

Nothing here touches the network except :mod:`stylebot.ml.weights` when asked to pull weights.
"""
