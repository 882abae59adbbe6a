-- Argo CD health check for apptopology.io/AppTopology.
--
-- Reads only what the operator writes through the status subresource: status.observedGeneration and
-- the Ready condition (status, reason, message, observedGeneration), plus spec.enforcement.
--   Progressing  the operator has not observed the current generation yet (no status, no Ready
--                condition, an older observedGeneration, or Ready=Unknown)
--   Healthy      Ready=True: the NetworkPolicies match the spec
--   Degraded     Ready=False, with the reason and the message
--   Suspended    spec.enforcement is DryRun: no policies are enforced (Degraded still wins when Ready=False
--                for any reason other than DryRun)
--
-- Written for the sandbox an argocd-cm script runs in: the base and table libraries only (no string, no
-- math, no global os), so it works unchanged as a built-in customization, where every library is open.

local function table_or_nil(value)
  if type(value) == "table" then
    return value
  end
  return nil
end

local function ready_condition(status)
  local conditions = table_or_nil(status.conditions)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

-- "Reason: message", or whichever of the two is set.
local function explain(condition, fallback)
  local reason = condition.reason
  local message = condition.message
  if type(reason) == "string" and reason ~= "" and type(message) == "string" and message ~= "" then
    return reason .. ": " .. message
  end
  if type(message) == "string" and message ~= "" then
    return message
  end
  if type(reason) == "string" and reason ~= "" then
    return reason
  end
  return fallback
end

-- The condition's message, or the fallback.
local function message_of(condition, fallback)
  if type(condition.message) == "string" and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

-- Whether an observedGeneration lags behind the object's generation (an absent one always does).
local function behind(observed, generation)
  if type(generation) ~= "number" then
    return false
  end
  return type(observed) ~= "number" or observed < generation
end

local function health(object)
  local metadata = table_or_nil(object.metadata) or {}
  local spec = table_or_nil(object.spec) or {}
  local status = table_or_nil(object.status)
  local generation = metadata.generation

  if status == nil then
    return { status = "Progressing", message = "Waiting for the operator to reconcile the topology" }
  end
  if behind(status.observedGeneration, generation) then
    local message = "Waiting for the operator to observe generation " .. tostring(generation)
    if type(status.observedGeneration) == "number" then
      message = message .. " (status is of generation " .. tostring(status.observedGeneration) .. ")"
    end
    return { status = "Progressing", message = message }
  end
  local ready = ready_condition(status)
  if ready == nil then
    return { status = "Progressing", message = "Waiting for the Ready condition" }
  end
  if ready.observedGeneration ~= nil and behind(ready.observedGeneration, generation) then
    return {
      status = "Progressing",
      message = "Waiting for the Ready condition of generation " .. tostring(generation),
    }
  end
  if ready.status ~= "True" and ready.status ~= "False" then
    return { status = "Progressing", message = explain(ready, "Ready is " .. tostring(ready.status)) }
  end

  if ready.status == "False" and ready.reason ~= "DryRun" then
    return { status = "Degraded", message = explain(ready, "Ready is False") }
  end
  if spec.enforcement == "DryRun" then
    return { status = "Suspended", message = message_of(ready, "Dry run: no NetworkPolicies are enforced") }
  end
  if ready.status == "True" then
    return { status = "Healthy", message = message_of(ready, "NetworkPolicies in sync") }
  end
  return { status = "Degraded", message = explain(ready, "Ready is False") }
end

return health(obj)
