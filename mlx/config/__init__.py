"""Config handling: locating the config tree, static signature reading and validation."""
