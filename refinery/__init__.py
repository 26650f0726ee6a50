"""eCR Refiner data layer: the `refinery` command-line application (commands, database
settings, embedded server, dbt runner). The loaders it drives live in the `loaders` package."""

__version__ = "0.1.0"
