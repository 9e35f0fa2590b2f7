"""`python -m ketch.ctl`: the same as the `ketchctl` command."""

from . import main

main()
