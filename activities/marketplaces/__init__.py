"""One module per cloud marketplace behind MarketplaceClient (base.py); the registry is
core/marketplaces.py."""
