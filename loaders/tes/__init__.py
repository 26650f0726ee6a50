"""TES terminology: fetch from the FHIR API, classify, write files; synthetic data and a fake server."""
