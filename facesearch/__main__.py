"""`python -m facesearch ...`: the same as the `facesearch` command."""
from .cli import main

if __name__ == "__main__":
    main()
