"""`python -m service.cli`, as the tests and benchmarks start the command."""

from service.cli import app

app()
