"""Config handling: locating the config tree, static signature reading, value checks and validation."""
