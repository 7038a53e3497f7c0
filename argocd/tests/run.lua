-- Runs the Argo CD health scripts against the fixtures; used by hack/test-argocd-health.sh.
--   lua5.1 run.lua PLAN.lua     (PLAN.lua comes from `python3 cases.py lua REPO`)
-- Each script runs the way Argo CD runs a custom health check from argocd-cm: a fresh
-- environment with the global `obj`, the base functions and `table`, and neither `string` nor
-- `math` (Argo CD's useOpenLibs defaults to false; string methods such as s:find are gone too).
-- Reading an undefined global or assigning one is an error, so typos and library use fail here
-- instead of turning into Unknown health in Argo CD.

if _VERSION ~= "Lua 5.1" then
  io.stderr:write("run.lua needs Lua 5.1 (Argo CD embeds gopher-lua, which is 5.1), not " .. _VERSION .. "\n")
  os.exit(2)
end

local plan = dofile(arg[1])

local BASE = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
  "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack",
  "xpcall", "_VERSION",
}
local HEALTH = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }

local function sandbox(obj)
  local env = { obj = obj, table = table }
  for _, name in ipairs(BASE) do
    env[name] = _G[name]
  end
  env._G = env
  return setmetatable(env, {
    __index = function(_, name)
      error("reads undefined global '" .. tostring(name) .. "' (Argo CD has no string/math library)", 2)
    end,
    __newindex = function(_, name)
      error("assigns global '" .. tostring(name) .. "' (use local)", 2)
    end,
  })
end

local compiled = {}
local function run(case)
  local chunk = compiled[case.script]
  if chunk == nil then
    local err
    chunk, err = loadfile(case.script)
    if chunk == nil then
      return nil, err
    end
    compiled[case.script] = chunk
  end
  setfenv(chunk, sandbox(case.obj))
  local strings = debug.getmetatable("")
  local index = strings.__index
  strings.__index = nil
  local ok, hs = pcall(chunk)
  strings.__index = index
  if not ok then
    return nil, "error: " .. tostring(hs)
  end
  return hs
end

local function check(case)
  local hs, err = run(case)
  if hs == nil then
    return false, err or "returned nil"
  end
  if type(hs) ~= "table" then
    return false, "returned a " .. type(hs) .. ", not a table"
  end
  if not HEALTH[hs.status] then
    return false, "invalid health status " .. tostring(hs.status)
  end
  if hs.message ~= nil and type(hs.message) ~= "string" then
    return false, "message is a " .. type(hs.message) .. ", not a string"
  end
  local got = hs.status .. ' "' .. tostring(hs.message) .. '"'
  if hs.status ~= case.status then
    return false, "want " .. case.status .. ", got " .. got
  end
  local message = hs.message or ""
  if case.exact ~= nil and message ~= case.exact then
    return false, 'want message "' .. case.exact .. '", got ' .. got
  end
  for _, part in ipairs(case.contains) do
    if not string.find(message, part, 1, true) then
      return false, 'want message containing "' .. part .. '", got ' .. got
    end
  end
  return true, got
end

local passed, failed = 0, 0
local function report(ok, name, detail)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
  end
  print(string.format("%-4s %-40s %s", ok and "ok" or "FAIL", name, detail))
end

for _, case in ipairs(plan.cases) do
  local ok, detail = check(case)
  report(ok, case.name, detail)
end
for _, c in ipairs(plan.checks) do
  report(c.ok, c.name, c.detail)
end
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
