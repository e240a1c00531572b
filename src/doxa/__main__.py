"""`python -m doxa` runs the CLI."""

from doxa.cli import main

main()
