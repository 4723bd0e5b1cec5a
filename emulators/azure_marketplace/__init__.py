"""Azure Marketplace metering emulator (usageEvent, batchUsageEvent, Entra ID tokens)."""
