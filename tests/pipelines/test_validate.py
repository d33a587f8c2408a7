"""`cortexflow validate` on next: routes: each mistake with its line and column, a hint, and
exit 1; `cortexflow graph` prints the routes of a valid file."""

from __future__ import annotations

from pathlib import Path

from cortexflow.config import load_config
from tests.helpers.procs import run_cli
from tests.helpers.project import write_project, write_shipped_project

BAD = """\
version: 1
queues:
  a:
    handler: os:getcwd
    next:
      - {to: b, name: x, for_each: messages}
      - {to: bb, name: y, id: [/a~2b]}
  b:
    handler: os:getcwd
    next:
      - {to: a, name: back}
      - {to: c, name: z, join: {to: a, name: j}}
  c:
    handler: os:getcwd
"""


def test_route_mistakes_are_reported_with_line_and_column(tmp_path: Path) -> None:
    cfg = write_project(tmp_path, BAD)
    result = run_cli("validate", "-f", str(cfg))
    assert result.returncode == 1, result.stdout
    text = result.stdout
    assert (
        f"{cfg}:6:9: error[route.cycle] queues.a.next[0]: next: routes form a loop: a -> b -> a"
        in text
    )
    assert "add allow_cycle: true to one of its routes" in text
    assert (
        f"{cfg}:6:36: error[schema.pattern] queues.a.next[0].for_each: expected a JSON pointer"
        in text
    )
    assert (
        f'{cfg}:7:14: error[route.unknown-queue] queues.a.next[1].to: the route goes to "bb"'
        in text
    )
    assert 'did you mean "b"?' in text
    assert f'{cfg}:7:32: error[route.bad-pointer] queues.a.next[1].id[0]: id part "/a~2b"' in text
    assert f"{cfg}:12:32: error[route.join-without-for-each] queues.b.next[1].join" in text
    assert "Traceback" not in result.stderr


def test_a_loop_with_allow_cycle_is_valid_and_graph_prints_it(tmp_path: Path) -> None:
    cfg = write_project(
        tmp_path,
        """\
        version: 1
        queues:
          a:
            handler: os:getcwd
            next:
              - {to: b, name: x, for_each: /items, join: {to: c, name: done}}
          b:
            handler: os:getcwd
            next:
              - {to: a, name: again, when: {path: /retry, equals: true}, allow_cycle: true}
          c:
            handler: os:getcwd
        """,
    )
    assert run_cli("validate", "-f", str(cfg)).returncode == 0
    graph = run_cli("graph", "-f", str(cfg))
    assert graph.returncode == 0
    assert graph.stdout.splitlines() == [
        "a -> b  [x, for each /items]",
        "b -> c  [join done (collect)]",
        "b -> a  [again, when /retry equals true]",
    ]
    dot = run_cli("graph", "--format", "dot", "-f", str(cfg)).stdout
    assert '"b" -> "c" [label="join done (collect)", style=dashed];' in dot


def test_graph_dead_letters_adds_each_queues_dead_letter_edge_only_when_asked(
    tmp_path: Path,
) -> None:
    cfg = write_shipped_project(tmp_path)
    plain = run_cli("graph", "-f", str(cfg)).stdout.splitlines()
    assert not [line for line in plain if "dead-letters" in line]
    full = run_cli("graph", "--dead-letters", "-f", str(cfg))
    assert full.returncode == 0
    lines = full.stdout.splitlines()
    # every route line is still there, in its place among the queue's edges
    assert [line for line in lines if "[dead letter]" not in line] == plain
    dead = sorted(line.split(" -> ")[0] for line in lines if line.endswith("[dead letter]"))
    # every shipped queue but the dead-letter queue itself dead-letters there
    assert dead == sorted(q for q in load_config(cfg).queues if q != "dead-letters")
    assert "notifications -> dead-letters  [dead letter]" in lines
    mermaid = run_cli("graph", "--format", "mermaid", "--dead-letters", "-f", str(cfg)).stdout
    assert 'notifications -.->|"dead letter"| dead_letters' in mermaid
    assert "-.->" not in run_cli("graph", "--format", "mermaid", "-f", str(cfg)).stdout
    dot = run_cli("graph", "--format", "dot", "--dead-letters", "-f", str(cfg)).stdout
    assert '"analytics" -> "dead-letters" [label="dead letter", style=dotted];' in dot
