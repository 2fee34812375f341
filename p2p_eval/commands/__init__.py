"""CLI sub-commands.

Each module here defines ``ORDER`` (an int that places it in ``p2p-eval --help``) and
``register(subparsers)``, which adds its sub-command(s) with ``set_defaults(func=...)``.
Handlers import the library lazily so that ``p2p-eval --help`` stays fast.
"""
