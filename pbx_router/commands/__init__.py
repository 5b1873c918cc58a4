"""CLI subcommands. Every module here exposes ``register(subparsers)``; ``pbx_router.cli`` finds
them all, so adding a command never means editing a shared file."""
