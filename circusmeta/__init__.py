"""circusmeta: treat a pool of circusd nodes as one (stateless)."""
