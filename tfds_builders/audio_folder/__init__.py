"""The user's own recordings (see README.md); build with `audio_folder_dataset_builder.make_builder`."""
