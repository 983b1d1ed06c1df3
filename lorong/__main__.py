"""``python -m lorong``: the ``lorong`` command (:func:`lorong.cli.main`), for a checkout without the
console script on ``PATH``."""

from lorong.cli import main

if __name__ == "__main__":
    main()
