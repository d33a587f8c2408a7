"""Children's output: line splitting (huge lines, partial chunks) and the two formats."""

from __future__ import annotations

import io
import json
import re

from cortexflow.supervisor.logmux import LineSplitter, LogSink, format_text
from cortexflow.termsafe import want_color


def test_splitter_joins_chunks_and_splits_lines() -> None:
    s = LineSplitter()
    assert s.feed(b"hel") == []
    assert s.feed(b"lo\nwor") == [b"hello"]
    assert s.feed(b"ld\n\nlast") == [b"world", b""]
    assert s.flush() == [b"last"]
    assert s.flush() == []


def test_splitter_keeps_a_one_megabyte_line_whole_fed_in_small_chunks() -> None:
    s = LineSplitter()
    line = b"x" * (1024 * 1024)
    out: list[bytes] = []
    for i in range(0, len(line), 4096):
        out += s.feed(line[i : i + 4096])
    out += s.feed(b"\nnext\n")
    assert out == [line, b"next"]


def test_splitter_cuts_lines_beyond_its_limit() -> None:
    s = LineSplitter(max_line=10)
    assert s.feed(b"a" * 25) == [b"a" * 10, b"a" * 10]
    assert s.feed(b"\n") == [b"a" * 5]


def test_text_prefix_is_padded_and_timestamped() -> None:
    text = format_text(0.0, "alpha.0", 12, "hello")
    assert text.endswith(" alpha.0      | hello")
    assert len(text.split(" ", 1)[0]) == len("HH:MM:SS")


def test_sink_writes_children_to_out_and_itself_to_err() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = LogSink(out, err)
    sink.fit(["notifications.0"])
    sink.child_line("notifications", 0, 42, "stderr", "boom")
    sink.event("two\nlines")
    assert out.getvalue().endswith(" notifications.0 | boom\n")
    assert [line[9:] for line in err.getvalue().splitlines()] == [
        "supervisor      | two",
        "supervisor      | lines",
    ]
    assert "\x1b[" not in out.getvalue()


def test_sink_colours_only_when_asked() -> None:
    out = io.StringIO()
    LogSink(out, out, color=True).child_line("a", 0, 1, "stdout", "x")
    assert "\x1b[" in out.getvalue()


def test_json_format_has_one_object_per_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = LogSink(out, err, fmt="json")
    sink.child_line("alpha", 1, 42, "stdout", 'say "hi"')
    record = json.loads(out.getvalue())
    assert record["queue"] == "alpha"
    assert record["replica"] == 1
    assert record["pid"] == 42
    assert record["stream"] == "stdout"
    assert record["message"] == 'say "hi"'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    sink.event("started\nsecond line")
    events = [json.loads(line) for line in err.getvalue().splitlines()]
    assert [e["message"] for e in events] == ["started", "second line"]
    assert {e["logger"] for e in events} == {"cortexflow.supervisor"}
    assert {e["level"] for e in events} == {"INFO"}


def test_a_childs_json_record_passes_through_and_other_lines_are_wrapped() -> None:
    out = io.StringIO()
    sink = LogSink(out, io.StringIO(), fmt="json")
    worker = '{"ts": "x", "level": "WARNING", "pid": 7, "queue": "q", "replica": 0, "message": "m"}'
    sink.child_line("q", 0, 7, "stderr", worker)
    sink.child_line("q", 0, 7, "stdout", '{"from": "a handler\'s print"}')
    sink.child_line("q", 0, 7, "stdout", "{not json")
    sink.child_line("q", 0, 7, "stdout", "[1, 2]")
    sink.child_line("q", 0, 7, "stderr", "a \x1b[31m line\ttab")
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0] == worker  # verbatim
    records = [json.loads(line) for line in lines]
    assert records[1] == {"from": "a handler's print", "queue": "q", "replica": 0, "pid": 7}
    assert records[2]["message"] == "{not json" and records[2]["stream"] == "stdout"
    assert records[3]["message"] == "[1, 2]"
    assert records[4]["message"] == "a \x1b[31m line\ttab"  # escaped by JSON, kept as text
    assert "\x1b" not in out.getvalue()


def test_no_colour_off_a_terminal_or_with_no_color(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert want_color(False, Tty())
    assert not want_color(True, Tty())
    assert not want_color(False, io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not want_color(False, Tty())
