"""GTZAN dataset (see README.md); `gtzan_dataset_builder.Builder` registers "gtzan"."""
