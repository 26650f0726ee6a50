"""One module per `refinery` subcommand; each exposes `run(args) -> exit code`."""
