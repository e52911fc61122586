# gilscope: title = Processes with multiprocessing
# gilscope: lesson = each child has its own GIL, shown as one more GIL with its own pid; the parent holds its GIL while it forks each child and releases it while it waits in join()
# gilscope: expect = ok
# gilscope: timeout = 60
# gilscope: modes = main, threads, processes
# gilscope: skip-reason = subinterpreters cannot start child processes: an isolated one forbids fork, and in a legacy shared one the forked children fail
"""Five processes, each printing "Task N running", then joined.

multiprocessing.Process runs the target in a child process: a separate
interpreter with its own GIL, so children run Python code truly in parallel.
The `if __name__ == "__main__":` guard is required: with the spawn start
method each child imports this file again, and without the guard it would
start children of its own.  The script uses the default start method (fork
on Linux up to 3.13) unless --start-method is given, e.g. spawn.

Checked: every child exited with status 0.
"""

import argparse
import multiprocessing
import sys

TASKS = 5


def task(n):
    print(f"Task {n} running", flush=True)


def main():
    parser = argparse.ArgumentParser(
        description="Five processes, each printing 'Task N running'.")
    parser.add_argument("--start-method",
                        choices=multiprocessing.get_all_start_methods(),
                        help="default: the platform's default")
    args = parser.parse_args()
    context = multiprocessing.get_context(args.start_method)
    print(f"start method: {context.get_start_method()}", flush=True)

    processes = [context.Process(target=task, name=f"task-{n}", args=(n,))
                 for n in range(TASKS)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()

    codes = {p.name: p.exitcode for p in processes}
    print(f"exit codes: {codes}")
    bad = {name: code for name, code in codes.items() if code != 0}
    if bad:
        print(f"05_processes: FAIL: children exited with {bad}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
