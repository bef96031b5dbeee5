"""Flight SQL server tests, driven by the real ADBC Flight SQL client."""
