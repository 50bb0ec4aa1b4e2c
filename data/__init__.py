"""Data the project generates itself and ships (see data/README.md for the commands)."""
