#!/bin/sh
# Post-processing: summarise the simulation's output (PI comes from the simulation's attribute).
set -eu
printf 'pi estimate: %s (from %s)\n' "$PI" "$WORK_DIR/pi.txt" > "$WORK_DIR/report.txt"
cat "$WORK_DIR/report.txt"
