-- Argo CD health check for mltenant.io/v1alpha1 MLTenant (docs/argocd.md).
-- Argo CD runs custom checks without the string and math libraries, so this uses only base
-- functions and table; hack/test-argocd-health.sh runs it in the same kind of sandbox.
local hs = {}

local function condition(status, name)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == name then
      return c
    end
  end
  return nil
end

-- "Reason: message", or whichever of the two is set.
local function explain(c, fallback)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  if message ~= "" then
    return message
  end
  return fallback
end

local meta = obj.metadata or {}
local status = obj.status

if meta.deletionTimestamp ~= nil then
  local finalizers = meta.finalizers or {}
  if #finalizers == 0 then
    hs.message = "deleting: no finalizers left"
  elseif #finalizers == 1 then
    hs.message = "deleting: waiting for finalizer " .. tostring(finalizers[1])
  else
    hs.message = "deleting: waiting for finalizers " .. table.concat(finalizers, ", ")
  end
  -- While namespaces terminate, NamespacesReady says which ones deletion waits for.
  local namespaces = condition(status, "NamespacesReady")
  if namespaces ~= nil and namespaces.status ~= "True" then
    hs.message = hs.message .. " (" .. explain(namespaces, "NamespacesReady is " .. tostring(namespaces.status)) .. ")"
  end
  hs.status = "Progressing"
  return hs
end

local generation = tonumber(meta.generation)
local observed = nil
if status ~= nil then
  observed = tonumber(status.observedGeneration)
end
if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  if generation == nil then
    hs.message = "waiting for the operator to report status"
  else
    hs.message = "waiting for the operator to observe generation " .. tostring(generation)
    if observed ~= nil then
      hs.message = hs.message .. " (status is for generation " .. tostring(observed) .. ")"
    end
  end
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Ready condition"
elseif ready.status == "False" and ready.reason == "Terminating" then
  -- A namespace is being deleted (an environment removed, or deleted by hand and about to be
  -- recreated): progress, not failure.
  hs.status = "Progressing"
  hs.message = explain(ready, "a namespace is terminating")
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(ready, "Ready is False")
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  -- Argo CD has no "warning" health: credentials near or past expiry stay Healthy, with the
  -- expiry as the message (the PrometheusRule alerts on it).
  local expiring = condition(status, "CredentialsExpiring")
  if expiring ~= nil and expiring.status == "True" then
    hs.message = explain(expiring, "credentials expiring")
  end
else
  hs.status = "Progressing"
  hs.message = explain(ready, "Ready is " .. tostring(ready.status))
end
return hs
