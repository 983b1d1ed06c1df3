"""Analytics: alerts for full bins, sensor faults and pollution, collection routes, air-quality indices."""
