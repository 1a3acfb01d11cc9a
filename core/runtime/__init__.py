"""How the processes run: their command lines, and the embedded Redis used when REDIS_URL is unset."""
