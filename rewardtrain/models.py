"""Training runs and reward models arrive with the training issue; the app exists so its migrations,
admin and tasks have a home from the start."""
