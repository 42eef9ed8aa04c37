"""The cache port's adapters: in process (the default) and Redis (REYNOLDS_REDIS_URL)."""
