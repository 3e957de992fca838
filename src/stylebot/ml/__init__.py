"""Pure compute: feed-forward style networks, NST refinement, CycleGAN generators, and the weights
registry that loads them all.

Nothing here reads settings or touches storage; only :func:`stylebot.ml.weights.pull` uses the
network, when asked to. Engines take loaded modules and explicit paths.
"""
