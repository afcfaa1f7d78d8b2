"""Configuration: typed settings per tenant, the tenant registry, the clients built from them, `data/.env`."""
