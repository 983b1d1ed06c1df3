"""The only code that talks to InfluxDB, the SQL database and the local services."""
