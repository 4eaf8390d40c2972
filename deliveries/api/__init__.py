"""The management API at /api/v1/ (DRF): what the admin configures and shows, for scripts and CI."""
