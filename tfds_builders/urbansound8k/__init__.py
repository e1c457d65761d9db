"""UrbanSound8K dataset (see README.md); `urbansound8k_dataset_builder.Builder`
registers "urbansound8k"."""
