"""`python -m reynolds` runs the `reynolds` command."""

from reynolds.entrypoints.cli import main

if __name__ == "__main__":
    main()
