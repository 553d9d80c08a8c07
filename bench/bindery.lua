-- wrk script: Bindery tools called through the gateway's aggregate endpoint (/mcp).
--
--   WRK_OPERATION   create | get | list
--   WRK_SESSION_ID  the legacy session opened before the run
--   WRK_TASKS       how many tasks were seeded (get picks an id in 1..WRK_TASKS at random)
--   WRK_PREFIX      the server's namespace prefix (default "bindery__")
--
-- Counts non-2xx answers, JSON-RPC errors and tool errors ("isError":true); done() prints one
-- line "BENCH {...}" that bindery.py parses.

local operation = os.getenv("WRK_OPERATION") or "get"
local session_id = os.getenv("WRK_SESSION_ID") or ""
local tasks = tonumber(os.getenv("WRK_TASKS") or "100")
local prefix = os.getenv("WRK_PREFIX") or "bindery__"

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
   table.insert(threads, thread)
end

local headers = {
   ["Content-Type"] = "application/json",
   ["Accept"] = "application/json, text/event-stream",
   ["MCP-Protocol-Version"] = "2025-11-25",
   ["Mcp-Session-Id"] = session_id,
}

local counter = 0
local base = 0
sent = 0
non_2xx = 0
rpc_errors = 0
tool_errors = 0

function init(args)
   base = (thread_number or 1) * 1000000000
   math.randomseed(thread_number or 1)
end

local function call(id, tool, arguments)
   return '{"jsonrpc":"2.0","id":' .. id .. ',"method":"tools/call","params":{"name":"'
      .. prefix .. tool .. '","arguments":' .. arguments .. '}}'
end

function request()
   counter = counter + 1
   sent = sent + 1
   local id = base + counter
   local body
   if operation == "create" then
      body = call(id, "create_task", '{"title":"bench task ' .. id .. '","priority":"high",'
         .. '"tags":["bench"]}')
   elseif operation == "list" then
      body = call(id, "list_tasks", '{"limit":20}')
   else
      body = call(id, "get_task", '{"task_id":' .. math.random(1, tasks) .. '}')
   end
   return wrk.format("POST", nil, headers, body)
end

function response(status, resp_headers, body)
   if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
   elseif body and string.find(body, '"isError":true', 1, true) then
      tool_errors = tool_errors + 1
   elseif body and string.find(body, '"error":{', 1, true) then
      rpc_errors = rpc_errors + 1
   end
end

function done(summary, latency, requests)
   local total_non_2xx, total_rpc_errors, total_tool_errors, total_sent = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      total_non_2xx = total_non_2xx + (thread:get("non_2xx") or 0)
      total_rpc_errors = total_rpc_errors + (thread:get("rpc_errors") or 0)
      total_tool_errors = total_tool_errors + (thread:get("tool_errors") or 0)
      total_sent = total_sent + (thread:get("sent") or 0)
   end
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"sent":%d,"non_2xx":%d,"rpc_errors":%d,'
         .. '"tool_errors":%d,"socket_errors":%d,"timeouts":%d,'
         .. '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, total_sent, total_non_2xx, total_rpc_errors,
      total_tool_errors, summary.errors.connect + summary.errors.read + summary.errors.write,
      summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
