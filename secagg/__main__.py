"""``python -m secagg``: the command line, as the installed ``secagg`` script."""

from secagg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
