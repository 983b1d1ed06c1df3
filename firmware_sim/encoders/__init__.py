"""Byte encoders that build the uplinks real devices send, for the simulator and round-trip tests.

One module per vendor; each encoder is the inverse of the codec of the same model in
:mod:`ingest.codecs`.
"""
