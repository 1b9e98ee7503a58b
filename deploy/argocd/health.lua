-- Argo CD health for BucketEncryption and BucketEncryptionPolicy (the same conditions), as
-- resource.customizations.health.oss.encryption.dev_BucketEncryption and
-- resource.customizations.health.oss.encryption.dev_BucketEncryptionPolicy in argocd-cm.
local hs = {status = "Progressing", message = "Waiting for the operator"}
local found = {}
for _, c in ipairs((obj.status or {}).conditions or {}) do
  found[c.type] = c
end
local function say(c)
  local message = c.message or ""
  if message == "" then return c.reason end
  return c.reason .. ": " .. message
end
local ready, stalled, reconciling = found["Ready"], found["Stalled"], found["Reconciling"]
if obj.status == nil or obj.status.observedGeneration ~= obj.metadata.generation then
  -- the latest spec has not been acted on yet (a retry says why)
  if reconciling ~= nil and reconciling.status == "True" then hs.message = say(reconciling) end
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"; hs.message = say(stalled) -- only a change of spec or environment helps
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.message = say(reconciling) -- being acted on or retried
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"; hs.message = say(ready)
  -- Observe mode is healthy (its job is to report); the finding is in InSync or Compliant.
  for _, t in ipairs({"InSync", "Compliant"}) do
    if found[t] ~= nil and found[t].status == "False" then hs.message = hs.message .. "; " .. say(found[t]) end
  end
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"; hs.message = say(ready)
end
return hs
