"""The meta-learner: masks, inner loop, the reference and fast engines, method presets."""
