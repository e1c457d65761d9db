"""The user's own recordings (see README.md); build with `builder.make_builder`.

Not in the TFDS catalog: nothing imports it by name, and its `Builder` is not
registered.
"""
