"""The user's own recordings (see README.md); build with `builder.make_builder`.

Not in the TFDS catalog: nothing imports it by name, and its `Builder` is not
registered. `builder` holds the `Builder`; the steps of making its config are
`options`, `scan`, `folds_csv`, `clips` and `fingerprint`.
"""
