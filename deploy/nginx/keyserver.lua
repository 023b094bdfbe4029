-- Which published file answers a lookup (keys.services.published_files).
--
-- Loaded by nginx's Lua module (libnginx-mod-http-lua). `route()` runs for
-- GET and HEAD of the lookup paths: when the request names an answer the
-- application would compute from the published tree, it redirects to an
-- internal location that serves the file (and still falls through to the
-- application when the file does not exist); anything it is not certain of
-- goes to the application untouched. It reads the raw request line, as the
-- application does: a '+' in a query stays a '+', paths are decoded once.

local M = {}

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- A path part as the tree names it: a-z 0-9 . _ + - kept, every other byte %XX.
local function component(s)
  return (s:gsub("[^a-z0-9%._%+%-]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- The last value of a query parameter, '+' kept as it is (keys.views.http.raw_query).
local function param(args, name)
  local value
  for part in (args or ""):gmatch("[^&]+") do
    local key, rest = part:match("^([^=]*)=?(.*)$")
    if unescape(key) == name then value = unescape(rest) end
  end
  return value
end

-- An ASCII host name: labels of a-z 0-9 and inner hyphens, dots between.
function M.domain_name(domain)
  if #domain > 253 or domain:find("..", 1, true) then return false end
  return domain:match("^[a-z0-9][a-z0-9%.%-]*$") ~= nil and domain:match("[a-z0-9]$") ~= nil
end

-- The tree's <domain>/<local> for an ASCII address, normalised as the
-- application does (ASCII lowercase); nil for anything else, which the
-- application then answers (internationalised domains, odd forms).
function M.address(raw, plus_for_space)
  local text = trim(raw)
  if plus_for_space then text = text:gsub(" ", "+") end
  if #text > 254 then return nil end
  local localpart, domain = text:match("^([^@]+)@([^@]+)$")
  if not localpart or #localpart > 64 then return nil end
  if not localpart:match("^[A-Za-z0-9!#$%%&'*+/=?^_`{|}~%.%-]+$") then return nil end
  if localpart:sub(1, 1) == "." or localpart:sub(-1) == "." or localpart:find("..", 1, true) then
    return nil
  end
  domain = domain:lower()
  if not M.domain_name(domain) then return nil end
  return component(domain) .. "/" .. component(localpart:lower())
end

-- A 16-hex key id or a 40/64-hex fingerprint: its tree path.
local function hex_path(raw)
  local id = trim(raw):gsub(" ", ""):upper():gsub("^0X", "")
  if not id:match("^%x+$") then return nil end
  if #id == 16 then return "keyid/" .. id:sub(1, 2) .. "/" .. id, id end
  if #id == 40 or #id == 64 then return "fpr/" .. id:sub(1, 2) .. "/" .. id, id end
  return nil
end

-- HKP /pks/lookup (draft-gallagher-openpgp-hkp): op=get by address or id,
-- op=index|vindex with options=mr by address.
local function hkp(args)
  local search = param(args, "search")
  if not search then return nil end
  local op = param(args, "op") or "get"
  local mr = false
  for option in (param(args, "options") or ""):gmatch("[^,]+") do
    if option == "mr" then mr = true end
  end
  if op ~= "get" and not (mr and (op == "index" or op == "vindex")) then return nil end
  local text = trim(unescape(search))
  if text == "" then return nil end
  if text:find("@", 1, true) then
    local address = M.address(text:match("<([^<>]*)>%s*$") or text, true)
    if not address then return nil end
    if op == "get" then return "hkp-key", "email/" .. address end
    return "hkp-index", "index/" .. address
  end
  if op ~= "get" then return nil end
  local path = hex_path(text)
  if path then return "hkp-key", path end
  return nil
end

local function zbase32_hash(s)
  return #s == 32 and s:match("^[ybndrfg8ejkmcpqxot1uwisza345h769]+$") ~= nil
end

local function wkd_domain(raw)
  local domain = trim(raw):lower():gsub("%.+$", "")
  if not M.domain_name(domain) then return nil end
  return domain
end

-- What a lookup path names: (location kind, tree path, download name) or nil.
function M.decide(path, args, host, any_host)
  if path == "/pks/lookup" then return hkp(args) end
  local rest = path:match("^/vks/v1/by%-fingerprint/([^/]+)$")
  if rest then
    local tree, id = hex_path(rest)
    if tree and tree:sub(1, 4) == "fpr/" then return "vks-key", tree, id end
    return nil
  end
  rest = path:match("^/vks/v1/by%-keyid/([^/]+)$")
  if rest then
    local tree, id = hex_path(rest)
    if tree and tree:sub(1, 6) == "keyid/" then return "vks-key", tree, id end
    return nil
  end
  rest = path:match("^/vks/v1/by%-email/(.+)$")
  if rest then
    local address = M.address(rest, false)
    if address then return "vks-email", "email/" .. address end
    return nil
  end
  rest = path:match("^/pub/([^/]+)$")
  if rest then
    if not rest:find("@", 1, true) then return nil end -- key ids: the application
    local address = M.address(rest, false)
    if address then return "pub", "pub/" .. address end
    return nil
  end
  local domain, hash = path:match("^/%.well%-known/openpgpkey/([^/]+)/hu/([^/]+)$")
  if domain then
    domain = wkd_domain(domain)
    if not domain or not zbase32_hash(hash) then return nil end
    if not any_host and host ~= "openpgpkey." .. domain then return nil end
    return "wkd", "wkd/" .. component(domain) .. "/" .. hash
  end
  hash = path:match("^/%.well%-known/openpgpkey/hu/([^/]+)$")
  if hash then
    domain = wkd_domain(host or "")
    if not domain or not zbase32_hash(hash) then return nil end
    return "wkd", "wkd/" .. component(domain) .. "/" .. hash
  end
  return nil
end

local function exists(path)
  local file = io.open(path, "rb")
  if file then file:close() end
  return file ~= nil
end

local function read(path)
  local file = io.open(path, "rb")
  if not file then return nil end
  local text = file:read("*a")
  file:close()
  return text
end

-- Where the Key-Validation value of a tree path's answer is (published_files.level_path):
-- an address's index and pub answers share its email one.
local function level_of(tree)
  local kind, rest = tree:match("^([^/]+)/(.*)$")
  if kind == "index" or kind == "pub" then return "level/email/" .. rest end
  return "level/" .. tree
end

-- Where a tree path's "ask the application" marker is (published_files.marker_paths):
-- every answer of an address shares the address's marker.
local function marker_of(tree)
  local kind, rest = tree:match("^([^/]+)/(.*)$")
  if kind == "index" or kind == "pub" then return "known/email/" .. rest end
  return "known/" .. tree
end

local PROTOCOL = {
  ["hkp-key"] = "hkp", ["hkp-index"] = "hkp", ["vks-key"] = "vks", ["vks-email"] = "vks",
  pub = "attester", wkd = "hkp",
}

-- The access phase of the lookup locations.
function M.route(any_host)
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then return end
  local uri = ngx.var.request_uri
  local raw_path, args = uri:match("^([^?]*)%??(.*)$")
  local kind, tree, name = M.decide(unescape(raw_path), args, ngx.var.host, any_host)
  if not kind then return end
  local root = ngx.var.document_root
  if exists(root .. "/" .. tree) then
    -- Written before the answer and removed after it: without it, the
    -- application answers (with the header it computes).
    local level = read(root .. "/" .. level_of(tree))
    if not level or not level:match("^[a-z0-9_,]+$") then return end
    ngx.var.ks_level = level
    if kind == "vks-email" then
      -- VKS names the download after the first key's fingerprint.
      local first = io.open(root .. "/email-fpr/" .. tree:sub(7), "rb")
      if not first then return end
      name = first:read("*a")
      first:close()
      kind = "vks-key"
    end
    ngx.var.ks_file = tree
    ngx.var.ks_name = name or ""
    return ngx.exec("/_published/" .. kind)
  end
  if exists(root .. "/" .. marker_of(tree)) then return end -- stored, not in the tree: the application
  local by_address = tree:find("^email/") or tree:find("^index/") or tree:find("^pub/")
  local flag = by_address and ".final-misses-email" or ".final-misses-id"
  if kind == "wkd" or exists(root .. "/" .. flag) then
    ngx.var.ks_name = PROTOCOL[kind]
    return ngx.exec("/_missing")
  end
end

-- Django's choice of language (LocaleMiddleware): the language cookie, else
-- the first supported entry of Accept-Language by quality, else the default.
local function supported(code, languages)
  if not code then return nil end
  for _, language in ipairs(languages) do
    if code == language or code:match("^([^-]+)") == language then return language end
  end
  return nil
end

function M.language(messages)
  local cookie = ngx.var["cookie_" .. messages.cookie]
  local chosen = supported(cookie, messages.languages)
  if chosen then return chosen end
  local header = (ngx.var.http_accept_language or ""):lower()
  local entries = {}
  for part in header:gmatch("[^,]+") do
    local tag, q = part:match("^%s*([a-z0-9*%-]+)%s*;%s*q%s*=%s*([0-9.]+)%s*$")
    if not tag then tag, q = part:match("^%s*([a-z0-9*%-]+)%s*$"), "1" end
    if not tag then return messages.default end -- malformed: Django ignores the header
    entries[#entries + 1] = {tag = tag, q = tonumber(q) or 0, order = #entries}
  end
  table.sort(entries, function(a, b) return a.q > b.q or (a.q == b.q and a.order < b.order) end)
  for _, entry in ipairs(entries) do
    if entry.tag == "*" then break end
    chosen = supported(entry.tag, messages.languages)
    if chosen then return chosen end
  end
  return messages.default
end

-- A final miss, answered as the application answers it (keys.views.http.error_response).
function M.missing(messages)
  local protocol = ngx.var.ks_name
  local language = M.language(messages)
  local body = messages[protocol][language]
  ngx.status = 404
  ngx.header["Content-Type"] = messages.types[protocol]
  ngx.header["Content-Length"] = #body
  ngx.header["Vary"] = "Accept-Language"
  ngx.header["Content-Language"] = language
  ngx.header["Access-Control-Allow-Origin"] = "*"
  ngx.header["X-Frame-Options"] = "DENY"
  ngx.header["X-Content-Type-Options"] = "nosniff"
  ngx.header["Referrer-Policy"] = "same-origin"
  ngx.header["Cross-Origin-Opener-Policy"] = "same-origin"
  ngx.header["X-Request-ID"] = ngx.var.request_id
  ngx.print(body)
  return ngx.exit(404)
end

return M
