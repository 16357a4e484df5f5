"""Command line entry point: ``main(argv)`` runs a verb from ``fersearch.commands``.

A FersearchError (bad input the user can fix) is one line on stderr and exit code 2, never a
traceback. ``main(argv)`` is what the console script and the tests call.
"""

from __future__ import annotations

import sys

import typer

from .errors import FersearchError


def main(argv: list[str] | None = None) -> int:
    import optuna

    # fersearch prints its own one-line summaries; Optuna's INFO lines would repeat them.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from .commands import app

    command = typer.main.get_command(app)
    try:
        # standalone mode: the CLI framework prints usage errors itself and exits with 2.
        command.main(args=argv, prog_name="fersearch", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FersearchError as exc:
        print(f"fersearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fersearch: interrupted", file=sys.stderr)
        return 130
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
