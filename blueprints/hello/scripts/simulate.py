"""Simulation step: a Monte Carlo estimate of pi from SAMPLES draws."""

import os
import random

work_dir = os.environ["WORK_DIR"]
samples = int(os.environ.get("SAMPLES", "1000"))
rng = random.Random(42)
inside = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
estimate = 4.0 * inside / samples
with open(os.path.join(work_dir, "pi.txt"), "w") as out:
    out.write(f"{estimate}\n")
print(f"pi ~ {estimate} from {samples} samples")
# operation outputs: KEY=VALUE lines in $ORCH_OUTPUTS (the blueprint maps PI to an attribute)
with open(os.environ["ORCH_OUTPUTS"], "a") as outputs:
    outputs.write(f"PI={estimate}\n")
