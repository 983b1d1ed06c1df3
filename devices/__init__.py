"""Devices: the registry, registration over a serial cable, per-device MQTT credentials."""
