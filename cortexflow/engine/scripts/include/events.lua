--[[ events: add_event(stream, field, value, ...) appends one entry to a queue's event stream
(cortexflow/engine/events.py reads it), trimmed to about EVENTS_MAXLEN entries: the one place
the scripts name the cap (events.py's EVENTS_MAXLEN is the same number; a test checks).
Defines no keys or arguments of its own. ]]
local EVENTS_MAXLEN = 5000

local function add_event(stream, ...)
  redis.call('XADD', stream, 'MAXLEN', '~', EVENTS_MAXLEN, '*', ...)
end
