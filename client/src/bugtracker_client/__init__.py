"""bugtracker-client: the bugtracker API over HTTP, the `bt` command line and `bugtracker-mcp`."""

__version__ = "0.1.0"
