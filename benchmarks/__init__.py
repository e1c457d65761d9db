"""Benchmarks of keras_audio_cnn against its baselines: `python -m benchmarks`.

Each benchmark measures the project's path and its baseline side by side in one
run and returns rows for the table printed and written as JSON by `__main__`.
These are measurements, not tests: nothing here asserts a speed.
"""
