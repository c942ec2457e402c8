"""Run the promptsearch CLI from a checkout: `python cli.py study start search_spaces/quickstart.yaml`.

The installed console script `promptsearch` is the same app (promptsearch.cli:main).
"""

from promptsearch.cli import main

if __name__ == "__main__":
    main()
