"""Sentinel-1 amplitude for mae-domains (the worked example of docs/plugins.md)."""
