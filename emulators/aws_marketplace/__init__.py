"""AWS Marketplace Metering Service emulator (BatchMeterUsage, ResolveCustomer) for issue 9."""
