"""Process exit codes, one meaning each (documented in README.md)."""

OK = 0  # clean: nothing to report at the failing severity
FINDINGS = 1  # the blueprint has errors (or warnings with --strict)
USAGE = 2  # bad command line (click's own code for usage errors)
CONFIG = 3  # orch's configuration or environment is unusable (catalog folder missing, ...)
OPERATION_FAILED = 4  # a deployment operation failed (see `orch status`)
BUSY = 5  # the deployment is locked: another orch is deploying or undeploying it
DRIFTED = 6  # the deployment differs from the blueprint/inputs given: see `orch diff`, --update
INTERNAL = 70  # a bug in orch (EX_SOFTWARE); the message says how to report it
INTERRUPTED = 130  # stopped by the user (SIGINT/SIGTERM); run the command again to resume
