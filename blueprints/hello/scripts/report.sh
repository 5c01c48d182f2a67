#!/bin/sh
# Post-processing: summarise the simulation's output.
set -eu
printf 'pi estimate: %s\n' "$(cat "$WORK_DIR/pi.txt")" > "$WORK_DIR/report.txt"
cat "$WORK_DIR/report.txt"
