"""
Configuration: the parameter registry, main.cf and master.cf, and typed,
stress-aware parameter lookups.
"""
