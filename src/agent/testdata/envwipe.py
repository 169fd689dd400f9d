"""For procs.test.ts: what nginx does to its environment. After a line on stdin it writes over
the memory that /proc/PID/environ shows (nginx's process title does), then forks a child
without exec (nginx's worker), prints the child's pid and waits for another line."""
import os
import sys


def wipe_environ():
    fields = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
    with open('/proc/self/mem', 'r+b', buffering=0) as mem:
        mem.seek(start)
        mem.write(b'\0' * (end - start))


sys.stdin.readline()
wipe_environ()
pid = os.fork()
if pid == 0:
    sys.stdin.readline()
    os._exit(0)
print(pid, flush=True)
sys.stdin.readline()
os.waitpid(pid, 0)
