"""Google Cloud Marketplace emulator (Service Control, Partner Procurement) for issue 9."""
