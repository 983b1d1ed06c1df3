"""Lorong's own shared packages and its entry point.

- :mod:`lorong.core`: the shared vocabulary (types, metrics and units, alert catalogue, errors,
  settings); no I/O.
- :mod:`lorong.storage`: the only code that talks to InfluxDB or the SQL database (plus the on-disk
  spool and the embedded stack).
- :mod:`lorong.cli`: the ``lorong`` command, the composition root that imports every room.

The rooms (``ingest``, ``devices``, ``analytics``, ``api``, ``firmware_sim``, ``dashboards``) are
top-level packages beside this one.
"""
