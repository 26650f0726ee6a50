"""eCR Refiner data layer: TES loaders and the dbt project driver (`refinery`)."""

__version__ = "0.1.0"
