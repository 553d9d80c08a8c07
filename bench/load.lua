-- wrk script: POST a tools/call of one tool (echo) with a text of N bytes, a unique id each time.
--
--   WRK_PAYLOAD_BYTES   size of the echoed text (default 20)
--   WRK_PROTOCOL        legacy (default) | modern
--                         legacy: Mcp-Session-Id (if WRK_SESSION_ID is set) + MCP-Protocol-Version
--                         modern: no session; params._meta, and the MCP-Protocol-Version
--                                 (2026-07-28), Mcp-Method and Mcp-Name headers
--   WRK_SESSION_ID      session from an initialize done before the run (legacy endpoints)
--   WRK_PROTOCOL_VERSION  legacy version header (default 2025-11-25)
--   WRK_TOOL_NAME       tool to call (default echo; raw__echo through the namespaced /mcp)
--
-- Each response that is not 2xx, or whose body holds a JSON-RPC "error", is counted; done()
-- prints one line "BENCH {...}" with the totals, which run.py parses.
--
--   wrk -t1 -c16 -d10s --latency -s bench/load.lua http://127.0.0.1:PORT/mcp

local payload_bytes = tonumber(os.getenv("WRK_PAYLOAD_BYTES") or "20")
local protocol = os.getenv("WRK_PROTOCOL") or "legacy"
local session_id = os.getenv("WRK_SESSION_ID") or ""
local legacy_version = os.getenv("WRK_PROTOCOL_VERSION") or "2025-11-25"
local tool = os.getenv("WRK_TOOL_NAME") or "echo"

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
}
local meta = ""
if protocol == "modern" then
   headers["MCP-Protocol-Version"] = "2026-07-28"
   headers["Mcp-Method"] = "tools/call"
   headers["Mcp-Name"] = tool
   meta = ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
      .. '"io.modelcontextprotocol/clientCapabilities":{}}'
else
   headers["MCP-Protocol-Version"] = legacy_version
   if session_id ~= "" then
      headers["Mcp-Session-Id"] = session_id
   end
end

-- The body is prefix .. id .. suffix: the big text is built once, not per request.
local prefix = '{"jsonrpc":"2.0","id":'
local suffix = ',"method":"tools/call","params":{"name":"' .. tool .. '","arguments":{"text":"'
   .. string.rep("x", payload_bytes) .. '"}' .. meta .. '}}'

local counter = 0
local base = 0
sent = 0
non_2xx = 0
rpc_errors = 0

function init(args)
   -- Ids unique across threads: thread n uses n * 10^9 + 1, 2, 3 ...
   base = (thread_number or 1) * 1000000000
end

function request()
   counter = counter + 1
   sent = sent + 1
   return wrk.format("POST", nil, headers, prefix .. (base + counter) .. suffix)
end

function response(status, resp_headers, body)
   if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
   elseif body and string.find(body, '"error"', 1, true) then
      rpc_errors = rpc_errors + 1
   end
end

function done(summary, latency, requests)
   local total_non_2xx, total_rpc_errors, total_sent = 0, 0, 0
   for _, thread in ipairs(threads) do
      total_non_2xx = total_non_2xx + (thread:get("non_2xx") or 0)
      total_rpc_errors = total_rpc_errors + (thread:get("rpc_errors") or 0)
      total_sent = total_sent + (thread:get("sent") or 0)
   end
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"sent":%d,"non_2xx":%d,"rpc_errors":%d,'
         .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,'
         .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, total_sent, total_non_2xx, total_rpc_errors,
      summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
