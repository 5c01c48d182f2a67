"""Allow ``python -m orch``."""

from orch.cli.main import main

main()
