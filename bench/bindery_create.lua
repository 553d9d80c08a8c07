-- wrk script: POST /api/tasks to a Bindery backend (one small task per request).
--
--   wrk -t1 -c16 -d10s --latency -s bench/bindery_create.lua http://127.0.0.1:PORT/api/tasks
--   wrk -t1 -c16 -d10s --latency http://127.0.0.1:PORT/api/tasks/1      (reads need no script)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench task","description":"a task made by wrk","tags":["bench","load"],'
   .. '"priority":"high"}'
