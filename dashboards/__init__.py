"""Grafana dashboards as code: Bins, Air quality and Operations.

Built with grafana-foundation-sdk (Grafana's own SDK, Grafana 11.6 build). Each dashboard module
(:mod:`dashboards.bins`, :mod:`dashboards.air`, :mod:`dashboards.operations`) exposes ``UID`` and
``build() -> Dashboard``; :mod:`dashboards.build` turns them into JSON under ``dashboards/out/``
and :mod:`dashboards.push` uploads them with grafana-client. Every query is raw InfluxQL against
the provisioned InfluxDB datasource (:data:`dashboards.panels.DATASOURCE_UID`), and every
measurement, tag and field name comes from :mod:`lorong.core.schema`.
"""
