"""HPC sites as configuration (``sites.yaml``), the SSH keys they are reached with (credentials
named by a token), and a one-round-trip check of what a site offers.

Submodules are imported by name (``orch.sites.config``, ``.credentials``, ``.check``) so that
importing the package costs nothing.
"""
