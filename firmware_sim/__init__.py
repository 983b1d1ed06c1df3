"""Device simulators: sensor physics, a Makassar fleet, and encoders for each ingest format."""
