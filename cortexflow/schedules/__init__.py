"""Schedules: cron and interval jobs, exactly one job per tick across every supervisor.

- rules: when a schedule ticks (cron by cronsim, intervals), pure functions of time;
- scheduler: the task inside `cortexflow up` that adds each tick's job through the engine.
"""
