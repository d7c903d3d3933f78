"""``python -m multiprocess``: run the demo (the examples of the original README).

``--help`` says what it does; ``--start-method`` picks how it starts processes.
"""

__all__: list = []

if __name__ == "__main__":
    import sys

    from ._demo import main

    sys.exit(main())
