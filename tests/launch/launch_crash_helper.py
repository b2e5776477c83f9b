"""A stand-in for a stage whose rank 1 crashes while rank 0 is stuck (as in a collective that
will never complete). Run through ``llmtts launch --module launch_crash_helper``."""
import os
import sys
import time

if __name__ == "__main__":
    if os.environ.get("RANK") == "1":
        print("rank 1: simulated crash", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(3600)  # a hang: only the job's failure handling can end it
