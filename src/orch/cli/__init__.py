"""Command-line interface: click commands only; the work is done by orch.tosca and friends."""
