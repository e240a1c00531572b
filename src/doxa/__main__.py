"""`python -m doxa` runs the CLI."""

from doxa.cli.main import main

main()
