-- 1000 distinct 4 KiB files, requested round-robin (/files/f0000.bin .. f0999.bin).
local paths = {}
for i = 0, 999 do
  paths[#paths + 1] = string.format("/files/f%04d.bin", i)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, paths[(n % #paths) + 1])
end
