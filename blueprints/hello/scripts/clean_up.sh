#!/bin/sh
# Undeploy: remove what the workflow wrote.
set -eu
rm -rf "$WORK_DIR"
echo "removed $WORK_DIR"
