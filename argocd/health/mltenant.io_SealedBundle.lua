-- Argo CD health check for mltenant.io/v1alpha1 SealedBundle (docs/argocd.md).
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

local decryptable = condition(status, "Decryptable")
if decryptable == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Decryptable condition"
elseif decryptable.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(decryptable, "Decryptable is False")
elseif decryptable.status == "True" then
  hs.status = "Healthy"
  -- The operator's message names the sealing key ("all N values open with sealing key ...").
  hs.message = decryptable.message
  if hs.message == nil or hs.message == "" then
    if status.keyFingerprint ~= nil then
      hs.message = "opens with sealing key " .. tostring(status.keyFingerprint)
    else
      hs.message = "decryptable"
    end
  end
else
  hs.status = "Progressing"
  hs.message = explain(decryptable, "Decryptable is " .. tostring(decryptable.status))
end
return hs
