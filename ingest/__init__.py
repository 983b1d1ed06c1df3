"""Ingest: MQTT payloads from every gateway format into validated readings in InfluxDB."""
