"""The Event Delivery pages: their numbers (numbers.py: rollups, percentiles, what waits) and their views."""
