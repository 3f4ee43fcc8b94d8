-- wrk script for benches/load.sh: every request POSTs one atomic batch of 10 activity
-- messages (JSON Lines, ~170 bytes each) to the project in the URL.
local lines = {}
local events = { "job:scheduled", "job:started", "job:completed", "job:completed", "item:scraped" }
for i = 1, 10 do
  lines[i] = string.format(
    '{"event":"%s","job":"2222222/7/%d","user":"jobrunner","spider":"books.toscrape.com",'
      .. '"close_reason":"finished","items":%d,"requests":%d,"errors":0,"version":"2.3.1-4f9c2ab"}',
    events[(i - 1) % #events + 1], 40000 + i, 1000 + 37 * i, 1200 + 41 * i)
end

wrk.method = "POST"
wrk.body = table.concat(lines, "\n")
wrk.headers["Content-Type"] = "application/x-jsonlines"
