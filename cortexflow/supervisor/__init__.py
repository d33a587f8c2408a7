"""`cortexflow up`: the supervisor that runs every queue's worker processes.

- up: the whole command (queues, server, then the loop);
- loop: the reconcile loop (desired children vs live ones, every tick), stop and reload;
- child: one worker process (spawn, lifeline, signals, its output);
- plan: which children a config asks for, and what a reload changes;
- policy: restart decisions (backoff, FATAL) as pure functions;
- reload: SIGHUP, re-validate then apply;
- server: the embedded server as a supervised child;
- status: the heartbeat publisher that `cortexflow status` reads;
- scheduler: adds each schedule's job once per tick (with every other `up`);
- logmux: children's output, prefixed and coloured, or as JSON lines.
"""
