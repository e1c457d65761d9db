"""The user's own recordings (see README.md); build with `builder.make_builder`."""
