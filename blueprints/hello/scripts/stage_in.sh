#!/bin/sh
# Stage in: write the input data set the simulation reads.
set -eu
mkdir -p "$WORK_DIR"
seq 1 100 > "$WORK_DIR/input.txt"
echo "staged $(wc -l < "$WORK_DIR/input.txt") lines into $WORK_DIR"
