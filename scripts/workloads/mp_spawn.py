"""A multiprocessing.Pool of CPU work with the 'spawn' start method.

Each worker is a fresh interpreter started as sys.executable (under gilscope,
the gilscope-python binary, so it is traced too), with a GIL of its own:
the work runs in parallel, and no worker ever waits for another's GIL.

Reading it under gilscope: report.json lists every worker under processes[]
(role "spawn") and each worker's threads under threads[] with their own pid;
each process has its own GIL in gils[], busy while it crunches and never
contended by the other processes.
"""

# The same pool as mp_fork.py; only the start method differs. The workers
# import this module by name (spawn re-imports __main__), so crunch() lives
# in mp_fork and is found there.
from mp_fork import main

if __name__ == "__main__":
    main("spawn", __doc__)
