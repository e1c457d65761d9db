"""ESC-50 dataset (see README.md); `esc50_dataset_builder.Builder` registers "esc50"."""
