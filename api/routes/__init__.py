"""One router per resource, included by hand in :func:`api.main.create_app`."""
