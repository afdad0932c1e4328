"""``python -m hybridnb`` runs the CLI."""

from .cli import run

run()
