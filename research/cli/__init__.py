"""The command line above the runs: launch.py's checks of what a user typed."""
