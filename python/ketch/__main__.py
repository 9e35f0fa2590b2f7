"""`python -m ketch`: the same as the `ketch` command."""

from .cli import main

main()
