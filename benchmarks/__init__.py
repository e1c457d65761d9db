"""Benchmarks of keras_audio_cnn against the paper's PyTorch pipeline and plain Keras.

`python -m benchmarks` runs them (`__main__`): every timed side is a function of
`sides` (TensorFlow) or `torch_sides` (PyTorch, the only module importing torch),
run in its own process by `harness`, the sides of a benchmark taking turns in
interleaved trials; `data` holds the dataset benchmarks. `compare` is an A/B of one
side with two sets of options, `profile_step` a profiler trace of a training step.
These are measurements, not tests: nothing here asserts a speed.
"""
