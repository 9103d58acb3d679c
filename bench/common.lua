-- Shared by the other bench/*.lua scripts (loaded with dofile): a number per wrk thread,
-- bearer tokens read from BENCH_TOKENS (a file, one token a line), a count of answers that
-- hold GraphQL errors, and one `BENCH {json}` line at the end that bench/bench.py reads.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("thread_id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Per thread (each wrk thread has its own Lua state).
graphql_errors = 0
tokens = {}

function load_tokens()
   local path = os.getenv("BENCH_TOKENS")
   if path then
      for line in io.lines(path) do
         if line ~= "" then
            table.insert(tokens, line)
         end
      end
   end
   if #tokens == 0 then
      tokens = { "none" }
   end
end

-- A 200 whose body holds `"errors"` is a failed operation, not a served one.
function count_graphql_errors(status, headers, body)
   if status == 200 and body and body:find('"errors"', 1, true) then
      graphql_errors = graphql_errors + 1
   end
end

function done(summary, latency, requests)
   local graphql = 0
   for _, thread in ipairs(threads) do
      graphql = graphql + (thread:get("graphql_errors") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
         .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"status_errors":%d,'
         .. '"graphql_errors":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status, graphql))
end
